"""The WebSocket protocol: one model per message type the service publishes (README, "WebSocket messages").

Managers build these; the bus serializes each once (`wire`), numbering it per topic (`seq`). `parse` reads a
message back into its model (tests, and any Python client)."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Box = tuple[float, float, float, float]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    OPTIONAL: ClassVar[tuple[str, ...]] = ()  # fields left off the wire while None (not sent as null)

    seq: int | None = Field(None, description="per-topic number given by the bus; a gap = messages dropped")

    def wire(self, seq: int | None = None) -> str:
        """The JSON text sent: the fields in declaration order, `seq` last, optional fields only when set."""
        data = self.model_dump()
        data.pop("seq")
        for name in self.OPTIONAL:
            if data[name] is None:
                del data[name]
        seq = self.seq if seq is None else seq
        if seq is not None:
            data["seq"] = seq
        return json.dumps(data)


class Measures(BaseModel):
    """A scored frame's score and the measures it is made of (live streams and uploads alike)."""

    score: float
    psnr: float = Field(description="Whole-frame PSNR, dB (the paper's measure)")
    distance: float = Field(description="Mean feature distance to the nearest memory item (the paper's measure)")
    region_psnr: float = Field(
        description="PSNR of the worst error window, dB, minus the frame's median window's where the model's "
        "calibration is relative: the measure the score uses"
    )
    region_distance: float = Field(
        description="Feature distance of the worst window of query positions, over the frame's median where relative"
    )
    box: Box = Field(description="x, y, w, h (fractions) of the region that set the score")


# Field order: a model's fields follow those of its bases, the last-listed base's first; so `Head(Message)` bases
# put `type` and the subject ahead of the measures on the wire.
class _StreamScoreHead(Message):
    type: Literal["score"] = "score"
    stream: str
    frame: int
    captured: float = Field(description="unix time the frame was read")


class StreamScore(Measures, _StreamScoreHead):
    """A live stream's scored frame."""

    anomalous: bool = Field(description="score >= the stream's alert `on` threshold")
    in_alert: bool = Field(description="an alert episode is open")


class _Frame(BaseModel):
    frame: int


class FrameScore(Measures, _Frame):
    """An uploaded clip's scored frame: a row of its result (GET /api/clips/{id}) and the body of its score
    message alike."""

    anomalous: bool


class ClipSegment(BaseModel):
    """A stretch of an uploaded clip the alert machine flagged, placed in the video, not in the server's clock."""

    start_frame: int = Field(description="the first frame of the run that opened it (decoded frame number)")
    start_time: float = Field(description="seconds from the clip's first frame (start_frame / the clip's fps)")
    end_frame: int = Field(description="its last frame at or above the `off` threshold")
    end_time: float = Field(description="seconds from the clip's first frame")
    peak_score: float
    peak_frame: int


class ClipSummary(BaseModel):
    anomalous_segments: list[ClipSegment]
    threshold_on: float | None = Field(None, description="alert `on` the clip was scored with (null: never scored)")
    threshold_off: float | None = None
    warnings: list[str] = Field(description="what makes these scores less trustworthy (low frame rate, truncation)")


class ClipState(BaseModel):
    """An upload job's state: GET /api/clips/{id} (with its scores) and the `done` message (without) alike."""

    id: str
    status: Literal["queued", "running", "done", "failed"]
    error: str | None
    progress: float
    model: str
    stream: str | None = Field(
        None, description="the stream it was scored as (its calibration, alert thresholds and mask), if any"
    )
    fps: float | None
    frames_decoded: int
    frames_scored: int
    summary: ClipSummary


class _ClipScoreHead(Message):
    type: Literal["score"] = "score"
    clip: str


class ClipScoreMessage(FrameScore, _ClipScoreHead):
    """An uploaded clip's scored frame (the backlog sent on connect carries no `progress`)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("progress",)

    progress: float | None = None


class AlertEvent(Message):
    stream: str
    name: str = Field(description="the stream's name")
    id: int | None = Field(description="the alert's id (GET /api/alerts/{id})")
    start_frame: int
    start_time: float
    end_frame: int | None
    end_time: float | None
    peak_score: float
    peak_frame: int
    thumbnail_url: str | None
    heatmap_url: str | None


class AlertOpen(AlertEvent):
    """An alert episode opened (on the stream's topic and the alerts topic)."""

    type: Literal["alert_open"] = "alert_open"


class AlertClose(AlertEvent):
    """An alert episode closed."""

    type: Literal["alert_close"] = "alert_close"


class AlertThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: float
    off: float


class Calibrated(Message):
    """A stream's own calibration is in force (a fit, or a reset to the checkpoint's)."""

    type: Literal["calibrated"] = "calibrated"
    stream: str
    state: Literal["model", "collecting", "fitted"]
    progress: float
    frames: int
    target_frames: int
    first_frame: int | None
    last_frame: int | None
    calibration: dict[str, Any] = Field(description="model.calibration.Calibration's fields")
    fitted_at: float | None
    alert: AlertThresholds


Verdict = Literal["false_alarm", "confirmed"]  # an operator's review of an alert


class AlertReviewed(Message):
    """An operator judged an alert, or took the verdict back (`/ws/alerts`): every open alerts page shows it."""

    type: Literal["alert_review"] = "alert_review"
    stream: str
    id: int
    verdict: Verdict | None
    reviewed_at: float | None


class Masked(Message):
    """A stream's mask changed: from the next frame on, the score ignores these polygons (service.pipeline.masks)."""

    type: Literal["mask"] = "mask"
    stream: str
    polygons: list[list[tuple[float, float]]] = Field(description="x, y fractions of the frame; [] = no mask")
    watched: float = Field(description="share of the frame the score looks at")


class Dropped(Message):
    """This subscriber was too slow: it lost `dropped` messages (the oldest) since the last notice."""

    type: Literal["dropped"] = "dropped"
    topic: str
    dropped: int
    total_dropped: int


class _ClipDoneHead(Message):
    type: Literal["done"] = "done"
    clip: str


class ClipDone(ClipState, _ClipDoneHead):
    """An uploaded clip's job ended (done or failed): its state, as GET /api/clips/{id}?scores=false."""


AnyMessage = (
    StreamScore | ClipScoreMessage | AlertOpen | AlertClose | AlertReviewed | Calibrated | Masked | Dropped | ClipDone
)
Published = list[tuple[str, Message]]  # (topic, message) pairs handed to the bus

_ANY: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


def parse(text: str | bytes) -> Message:
    """A received message as its model; pydantic.ValidationError if it matches none."""
    return _ANY.validate_python(json.loads(text))  # json.loads: the NaN a score may be, as json.dumps wrote it
