from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from service.alerts.episodes import ALERTS_TOPIC, picture_urls
from service.alerts.snapshots import AlertSnapshots
from service.api.deps import AnnounceDep, MetricsDep, SnapshotsDep, StoreDep
from service.api.schemas import AlertOut, AlertPage, AlertReview, ReviewFilter
from service.core.exceptions import AlertNotFound, PictureNotFound
from service.core.messages import AlertReviewed
from service.core.store import Store

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id is a 422, not an OverflowError (500)
AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="The alert's id")]


def _out(row: dict[str, Any]) -> dict[str, Any]:
    thumbnail, heat = row.pop("thumbnail", None), row.pop("heatmap", None)
    return row | picture_urls(row["id"], thumbnail=bool(thumbnail), heatmap=bool(heat))


@router.get("", response_model=AlertPage)
def list_alerts(
    store: StoreDep,
    stream: Annotated[str | None, Query(description="Only this stream's alerts")] = None,
    since: Annotated[
        float | None, Query(description="Episodes still going on or ending after this (Unix time, s)")
    ] = None,
    until: Annotated[float | None, Query(description="Episodes starting before this (Unix time, s)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    verdict: Annotated[ReviewFilter | None, Query(description="Only alerts reviewed so, or not yet")] = None,
) -> dict:
    rows, total = store.alerts(stream, since, until, limit, offset, verdict)
    return {"total": total, "limit": limit, "offset": offset, "items": [_out(r) for r in rows]}


def _alert(store: Store, alert_id: int) -> dict[str, Any]:
    row = store.alert(alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    return row


@router.get("/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: AlertId, store: StoreDep) -> dict:
    return _out(_alert(store, alert_id))


@router.patch("/{alert_id}", response_model=AlertOut)
def review_alert(
    alert_id: AlertId, body: AlertReview, store: StoreDep, metrics: MetricsDep, announce: AnnounceDep
) -> dict:
    """An operator's verdict on an alert: a false alarm or a confirmed event (null takes it back). Kept with the
    alert, filterable (`?verdict=`), counted in mnad_alert_reviews_total: how often a camera cries wolf; an
    `alert_review` message on /ws/alerts tells every other open dashboard."""
    row = store.review_alert(alert_id, body.verdict, time.time())
    if row is None:
        raise AlertNotFound(alert_id)
    metrics.alert_reviews.labels(row["stream_id"], body.verdict or "cleared").inc()
    review = AlertReviewed(stream=row["stream_id"], id=alert_id, verdict=row["verdict"], reviewed_at=row["reviewed_at"])
    announce([(ALERTS_TOPIC, review)])
    return _out(row)


def _snapshot(store: Store, snapshots: AlertSnapshots, alert_id: int, column: str, media_type: str) -> FileResponse:
    path = snapshots.path(_alert(store, alert_id).get(column))
    if path is None:
        raise PictureNotFound(alert_id, column)
    # rewritten when the peak moves before the episode closes: revalidate
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/{alert_id}/thumbnail.jpg", responses={200: {"content": {"image/jpeg": {}}}})
def alert_thumbnail(alert_id: AlertId, store: StoreDep, snapshots: SnapshotsDep) -> FileResponse:
    """The alert's peak frame (JPEG, 320 px wide at most), stored when the alert opened or closed."""
    return _snapshot(store, snapshots, alert_id, "thumbnail", "image/jpeg")


@router.get("/{alert_id}/heatmap.png", responses={200: {"content": {"image/png": {}}}})
def alert_heatmap(alert_id: AlertId, store: StoreDep, snapshots: SnapshotsDep) -> FileResponse:
    """Where the peak frame was anomalous: colour-mapped prediction error, RGBA PNG, the thumbnail's size."""
    return _snapshot(store, snapshots, alert_id, "heatmap", "image/png")
