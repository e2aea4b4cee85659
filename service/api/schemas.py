"""Typed request and response bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.calibration import Calibration
from service.core.messages import ClipState, FrameScore, Verdict
from service.core.policy import NETWORK_SCHEMES
from service.core.settings import check_thresholds

ReviewFilter = Literal[Verdict, "unreviewed"]  # GET /api/alerts?verdict=
Fraction = Annotated[float, Field(ge=0, le=1)]
MaskPolygon = Annotated[
    list[tuple[Fraction, Fraction]],
    Field(min_length=3, max_length=100, description="[x, y] points, fractions of the frame's width and height"),
]
Mask = Annotated[list[MaskPolygon], Field(max_length=32, description="Polygons the score ignores; [] for none")]


class MaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    polygons: Mask


class MaskOut(BaseModel):
    polygons: list[list[tuple[float, float]]]
    watched: float = Field(description="share of the frame the score looks at (at least 0.1)")


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    url: str = Field(min_length=1, max_length=2048, description="rtsp, rtsps, http or https URL of the camera")
    name: str = Field(min_length=1, max_length=200)
    model: str | None = Field(None, description="Model (checkpoint file stem); default: the service's default")
    fps_cap: float | None = Field(None, gt=0, le=240, description="Sample at most this many frames per second")
    alert_on: float | None = Field(None, ge=0, le=1)
    alert_off: float | None = Field(None, ge=0, le=1)
    alert_on_frames: int | None = Field(None, ge=1, le=10_000)
    alert_off_frames: int | None = Field(None, ge=1, le=10_000)
    mask: Mask = []

    @field_validator("url")
    @classmethod
    def _network_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme.lower() not in NETWORK_SCHEMES:
            raise ValueError(
                f"URL scheme {parts.scheme or '(none)'!r} not allowed: use {', '.join(NETWORK_SCHEMES)}"
                " (local files only through --stream at start)"
            )
        if not parts.hostname:
            raise ValueError("URL has no host")
        return url

    @model_validator(mode="after")
    def _thresholds(self) -> StreamCreate:
        check_thresholds(self.alert_on, self.alert_off)
        return self

    def alert_overrides(self) -> dict[str, Any]:
        return {"on": self.alert_on, "off": self.alert_off, "on_frames": self.alert_on_frames,
                "off_frames": self.alert_off_frames}  # fmt: skip


class AlertSettings(BaseModel):
    on: float
    off: float
    on_frames: int
    off_frames: int
    open: bool


class StreamOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    name: str
    url: str
    model: str
    origin: Literal["api", "cli"]
    fps_cap: float | None
    state: Literal["connecting", "live", "reconnecting", "stopped", "error"]
    last_error: str | None
    fps_in: float
    fps_out: float
    frames_read: int
    frames_scored: int
    frames_dropped: int
    window_restarts: int = Field(description="times frames were dropped and the window refilled after the hole")
    reconnects: int
    reconnect_delay_s: float = Field(
        0.0,
        description="the wait before the next reconnect (0 while connecting or live); doubles per failure,"
        " capped, and starts over only after a session delivered frames for reconnect_healthy_s",
    )
    last_score: float | None
    alert: AlertSettings
    calibration: Literal["model", "collecting", "fitted"] = Field(
        "model", description="scores normalized by the checkpoint's calibration, or one fitted on this stream"
    )
    mask: MaskOut = MaskOut(polygons=[], watched=1.0)


class StreamCreated(BaseModel):
    id: str


class CalibrationStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(
        ge=2, le=3600,
        description="The stream's next `seconds` of scored frames (at its sampling rate, at least 20 frames) are "
        "normal footage: the operator's word. Scores keep their current calibration until the fit.",
    )  # fmt: skip


class CalibrationOut(BaseModel):
    state: Literal["model", "collecting", "fitted"] = Field(
        description="model: the checkpoint's calibration; collecting: frames are being gathered (the previous "
        "calibration scores until the fit); fitted: fitted on this stream's own footage"
    )
    progress: float = Field(ge=0, le=1, description="collected / target frames (1 once fitted)")
    frames: int = Field(description="frames collected so far, or fitted on")
    target_frames: int
    first_frame: int | None = Field(description="stream frame index of the first frame collected (this run)")
    last_frame: int | None
    calibration: Calibration = Field(
        description="the calibration scoring the stream now (model.calibration.Calibration: normalizers of PSNR and"
        " feature distance, fusion weight λ, alert thresholds, the region windows)"
    )
    fitted_at: float | None = Field(description="unix time of the fit in use; null for the checkpoint's")


class ModelOut(BaseModel):
    name: str
    path: str
    device: str
    fps: float
    window: int
    config: dict[str, Any]
    calibration: dict[str, Any]
    provenance: dict[str, Any]
    inference: dict[str, Any]  # the forward path that runs (MNAD_INFERENCE) and why, if it fell back


class ModelsOut(BaseModel):
    default: str | None
    models: list[ModelOut]
    errors: dict[str, str]


class AlertOut(BaseModel):
    id: int
    stream_id: str
    model: str
    start_time: float
    end_time: float | None
    start_frame: int
    end_frame: int | None
    peak_score: float
    peak_frame: int
    thumbnail_url: str | None = Field(None, description="Peak frame picture (JPEG), once stored")
    heatmap_url: str | None = Field(None, description="Peak frame heatmap (RGBA PNG, thumbnail-sized), once stored")
    closed_reason: str | None = Field(
        None,
        description="Why it ended other than by its scores: 'service restarted' (open at a crash), 'service stopped'"
        " (open at a clean stop); null: its scores fell below off",
    )
    verdict: Verdict | None = Field(None, description="An operator's review (PATCH /api/alerts/{id}); null: none yet")
    reviewed_at: float | None = Field(None, description="When the verdict was given (Unix time, s)")


class AlertReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict | None = Field(
        description="false_alarm: nothing anomalous happened (the camera cried wolf); confirmed: something did;"
        " null takes a verdict back"
    )


class ScorePoint(BaseModel):
    frame: int
    captured: float
    score: float


class ClipItem(BaseModel):
    id: str
    original_name: str | None
    size: int
    model: str
    status: str
    created: float
    finished: float | None


class AlertPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AlertOut]


class ClipCreated(BaseModel):
    id: str
    status: str


class ClipScore(FrameScore):
    """A scored frame of an upload (the same fields as its WebSocket score message)."""


class ClipOut(ClipState):
    scores: list[ClipScore] | None = None
