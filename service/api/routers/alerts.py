from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse

from service.alerts.episodes import picture_urls
from service.api.deps import runtime
from service.api.schemas import AlertOut, AlertPage
from service.core.exceptions import AlertNotFound, PictureNotFound
from service.runtime import Runtime

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id is a 422, not an OverflowError (500)
AlertId = Path(ge=1, le=MAX_ID, description="The alert's id")


def _out(row: dict[str, Any]) -> dict[str, Any]:
    thumbnail, heat = row.pop("thumbnail", None), row.pop("heatmap", None)
    return row | picture_urls(row["id"], thumbnail=bool(thumbnail), heatmap=bool(heat))


@router.get("", response_model=AlertPage)
def list_alerts(
    stream: str | None = Query(None, description="Only this stream's alerts"),
    since: float | None = Query(None, description="Episodes still going on or ending after this (Unix time, s)"),
    until: float | None = Query(None, description="Episodes starting before this (Unix time, s)"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ID),
    rt: Runtime = Depends(runtime),
) -> dict:
    rows, total = rt.store.alerts(stream, since, until, limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "items": [_out(r) for r in rows]}


def _alert(rt: Runtime, alert_id: int) -> dict[str, Any]:
    row = rt.store.alert(alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    return row


@router.get("/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: int = AlertId, rt: Runtime = Depends(runtime)) -> dict:
    return _out(_alert(rt, alert_id))


def _snapshot(rt: Runtime, alert_id: int, column: str, media_type: str) -> FileResponse:
    path = rt.snapshots.path(_alert(rt, alert_id).get(column))
    if path is None:
        raise PictureNotFound(alert_id, column)
    # rewritten when the peak moves before the episode closes: revalidate
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/{alert_id}/thumbnail.jpg", responses={200: {"content": {"image/jpeg": {}}}})
def alert_thumbnail(alert_id: int = AlertId, rt: Runtime = Depends(runtime)) -> FileResponse:
    """The alert's peak frame (JPEG, 320 px wide at most), stored when the alert opened or closed."""
    return _snapshot(rt, alert_id, "thumbnail", "image/jpeg")


@router.get("/{alert_id}/heatmap.png", responses={200: {"content": {"image/png": {}}}})
def alert_heatmap(alert_id: int = AlertId, rt: Runtime = Depends(runtime)) -> FileResponse:
    """Where the peak frame was anomalous: colour-mapped prediction error, RGBA PNG, the thumbnail's size."""
    return _snapshot(rt, alert_id, "heatmap", "image/png")
