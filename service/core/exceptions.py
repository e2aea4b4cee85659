"""Domain errors: what went wrong, in the managers' words. No HTTP here: `service.api.errors.status_for` maps each
kind to a status code, and one handler in the app (service/app.py) answers with the error body."""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Base of every error the managers raise for the API to report; str(e) is the message shown: `template` with
    the arguments filled in (by default the one argument itself)."""

    template: ClassVar[str] = "{}"

    def __init__(self, *args: object) -> None:
        super().__init__(self.template.format(*args))


# kinds (service.api.errors.STATUS maps each to its status code)
class NotFound(DomainError):
    """No such thing (or not yet)."""


class Conflict(DomainError):
    """Refused by the current state (retrying later may work)."""


class Invalid(DomainError):
    """The request names or carries something the service cannot use."""


# errors
class StreamNotFound(NotFound):
    template = "no stream {!r}"  # (stream id)


class ClipNotFound(NotFound):
    template = "no clip {!r}"  # (clip id)


class AlertNotFound(NotFound):
    template = "no alert {}"  # (alert id)


class PictureNotFound(NotFound):
    template = "alert {} has no stored {}"  # (alert id, "thumbnail" or "heatmap")


class FrameNotFound(NotFound):
    """A frame (of a clip or a stream) that has no score, picture or error map (yet)."""


class StreamLimit(Conflict):
    template = "stream limit reached ({}, setting max_streams)"  # (the limit)


class UnknownModel(Invalid):
    template = "unknown model {!r}; available: {}"  # (name asked for, names served)


class UnreadableVideo(Invalid):
    """A video that opens but cannot be used: corrupt, empty, or too short."""


class NotAVideo(UnreadableVideo):
    """Not a container OpenCV/FFmpeg can open at all."""
