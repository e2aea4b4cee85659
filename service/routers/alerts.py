from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from service.routers.deps import runtime
from service.runtime import Runtime
from service.schemas import AlertPage

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("", response_model=AlertPage)
def list_alerts(
    stream: str | None = Query(None, description="Only this stream's alerts"),
    since: float | None = Query(None, description="Episodes still going on or ending after this (Unix time, s)"),
    until: float | None = Query(None, description="Episodes starting before this (Unix time, s)"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    rt: Runtime = Depends(runtime),
) -> dict:
    rows, total = rt.store.alerts(stream, since, until, limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "items": rows}
