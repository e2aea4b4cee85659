from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Response

from service.alerts import heatmap
from service.alerts.views import View
from service.api.deps import HostDep, MetricsDep, StreamsApi, StreamsDep
from service.api.errors import responses
from service.api.params import Overlay, Width
from service.api.schemas import (
    CalibrationOut,
    CalibrationStart,
    MaskIn,
    MaskOut,
    ScorePoint,
    StreamCreate,
    StreamCreated,
    StreamOut,
)
from service.capture.sources import redact
from service.core.exceptions import FrameNotFound
from service.core.metrics import Metrics
from service.core.policy import SOURCE_REFUSED, SourceRefused, Unresolved

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/streams", tags=["streams"])


def _check_source(streams: StreamsApi, metrics: Metrics, url: str) -> None:
    """The source policy, before anything connects: one 422 text for every address it refuses, whatever the
    reason (the precise one goes to the log). A name that does not resolve now is let through: the reader
    retries it, and checks every address it resolves to at every connect."""
    policy = streams.source_policy
    scheme = urlsplit(url).scheme.lower()
    if scheme not in policy.schemes:
        metrics.sources_refused.labels("api").inc()
        raise HTTPException(422, f"URL scheme {scheme!r} not allowed here: source_schemes is {list(policy.schemes)}")
    try:
        policy.check(url)
    except Unresolved:
        pass
    except SourceRefused as e:
        log.warning("stream URL %s refused: %s", redact(url), e)
        metrics.sources_refused.labels("api").inc()
        raise HTTPException(422, SOURCE_REFUSED) from None


@router.post("", response_model=StreamCreated, status_code=201, responses=responses(409))
def create_stream(body: StreamCreate, host: HostDep, streams: StreamsDep, metrics: MetricsDep) -> dict:
    model = host.get(body.model)
    _check_source(streams, metrics, body.url)
    try:
        stream = streams.start(body.url, body.name, model, body.fps_cap, body.alert_overrides(), mask=body.mask)
    except ValueError as e:  # e.g. inconsistent thresholds with the calibration defaults
        raise HTTPException(422, str(e)) from None
    return {"id": stream.id}


@router.get("", response_model=list[StreamOut])
def list_streams(streams: StreamsDep) -> list[dict]:
    return [s.describe() for s in streams.list()]


@router.get("/{stream_id}", response_model=StreamOut)
def get_stream(stream_id: str, streams: StreamsDep) -> dict:
    return streams.get(stream_id).describe()


@router.delete("/{stream_id}", status_code=204)
def delete_stream(stream_id: str, streams: StreamsDep) -> Response:
    streams.delete(stream_id)
    return Response(status_code=204)


def _latest(streams: StreamsApi, stream_id: str) -> View:
    view = streams.get(stream_id).live.latest
    if view is None:
        raise FrameNotFound("no frame scored yet")
    return view


def _picture_headers(view: View) -> dict[str, str]:
    return {"Cache-Control": "no-store", "X-Frame": str(view.frame), "X-Score": f"{view.score:.6f}",
            "X-Captured": f"{view.captured:.3f}"}  # fmt: skip


@router.get("/{stream_id}/scores", response_model=list[ScorePoint])
def recent_scores(stream_id: str, streams: StreamsDep, limit: Annotated[int, Query(ge=1, le=5000)] = 600) -> list[dict]:
    """The stream's latest scores, oldest first (what a chart opened now starts from)."""
    return streams.get(stream_id).live.recent(limit)


@router.get("/{stream_id}/frame.jpg", responses={200: {"content": {"image/jpeg": {}}}})
def latest_frame(
    stream_id: str,
    streams: StreamsDep,
    overlay: Overlay = False,
    width: Annotated[int, Query(ge=16, le=4096, description="Downscale to at most this width")] = 640,
) -> Response:
    """The latest scored frame as JPEG (X-Frame, X-Score headers say which); encoded per request."""
    view = _latest(streams, stream_id)
    image = heatmap.render(view.picture, view.error, width, overlay, view.box)
    return Response(heatmap.jpeg(image), media_type="image/jpeg", headers=_picture_headers(view))


@router.get("/{stream_id}/heatmap.png", responses={200: {"content": {"image/png": {}}}})
def latest_heatmap(stream_id: str, streams: StreamsDep, width: Width = 640) -> Response:
    """The latest scored frame's per-pixel prediction error, colour-mapped RGBA PNG, frame.jpg's size."""
    view = _latest(streams, stream_id)
    if view.error is None:
        raise FrameNotFound("no error map for this frame")
    data = heatmap.render_heatmap(view.picture, view.error, width)
    return Response(data, media_type="image/png", headers=_picture_headers(view))


@router.post("/{stream_id}/calibration", response_model=CalibrationOut, status_code=202, responses=responses(409))
def start_calibration(stream_id: str, body: CalibrationStart, streams: StreamsDep) -> dict:
    """Calibrate on this camera: its next `seconds` of scored frames are taken as normal, and their PSNR and
    feature distance fit the stream's own score normalizer and alert thresholds (unless set explicitly).
    Poll GET for progress; the stream's WebSocket says `{"type": "calibrated", ...}` when it is in force.
    409 while one is collecting."""
    return streams.get(stream_id).start_calibration(body.seconds)


@router.get("/{stream_id}/calibration", response_model=CalibrationOut)
def get_calibration(stream_id: str, streams: StreamsDep) -> dict:
    """The calibration scoring the stream (the checkpoint's or its own) and any collection's progress."""
    return streams.get(stream_id).calibration_state()


@router.delete("/{stream_id}/calibration", response_model=CalibrationOut)
def reset_calibration(stream_id: str, streams: StreamsDep) -> dict:
    """Back to the checkpoint's calibration and thresholds; a collection in progress is dropped."""
    stream = streams.get(stream_id)
    stream.reset_calibration()
    return stream.calibration_state()


@router.get("/{stream_id}/mask", response_model=MaskOut)
def get_mask(stream_id: str, streams: StreamsDep) -> dict:
    """The polygons the stream's score ignores, and the share of the frame it looks at."""
    return streams.get(stream_id).describe()["mask"]


@router.put("/{stream_id}/mask", response_model=MaskOut, responses=responses(409))
def set_mask(stream_id: str, body: MaskIn, streams: StreamsDep) -> dict:
    """Replace the stream's mask: from the next frame on, its score, memory update and heatmap leave these
    polygons out (a clock burnt into the picture, a road, a tree in the wind). `[]` removes it. 422 if it leaves
    less than a tenth of the frame. Stored: it survives restarts. The stream's WebSocket says `{"type": "mask"}`.
    A fitted calibration stays; calibrate again if the masked part was busy while it collected."""
    return streams.get(stream_id).set_mask(body.polygons)
