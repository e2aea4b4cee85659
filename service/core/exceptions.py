"""Domain errors: what went wrong, in the managers' words. No HTTP here: `service.api.errors.status_for` maps each
kind to a status code, and one handler in the app (service/app.py) answers with the error body."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the managers raise for the API to report; str(e) is the message shown."""


class NotFound(DomainError):
    """No such thing (or not yet)."""


class StreamNotFound(NotFound):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no stream {stream_id!r}")


class ClipNotFound(NotFound):
    def __init__(self, clip_id: str) -> None:
        super().__init__(f"no clip {clip_id!r}")


class FrameNotFound(NotFound):
    """A frame (of a clip or a stream) that has no score, picture or error map (yet)."""


class Conflict(DomainError):
    """Refused by the current state (retrying later may work)."""


class StreamLimit(Conflict):
    def __init__(self, limit: int) -> None:
        super().__init__(f"stream limit reached ({limit}, setting max_streams)")


class Invalid(DomainError):
    """The request names or carries something the service cannot use."""


class UnknownModel(Invalid):
    def __init__(self, name: str | None, available: list[str]) -> None:
        super().__init__(f"unknown model {name!r}; available: {available}")


class UnreadableVideo(Invalid):
    """A video that opens but cannot be used: corrupt, empty, or too short."""


class NotAVideo(UnreadableVideo):
    """Not a container OpenCV/FFmpeg can open at all."""
