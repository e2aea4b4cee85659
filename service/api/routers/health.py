from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from service.api.deps import runtime
from service.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(rt: Runtime = Depends(runtime)) -> dict:
    """Liveness: the process answers (always 200). Also says whether it is ready yet, for pages that
    poll it: a browser logs every 503 from /readyz as an error."""
    ready = rt.ready.is_set()
    return {"status": "ok", "ready": ready, "models": rt.host.names() if ready and rt.host else [],
            "error": rt.startup_error}  # fmt: skip


@router.get("/readyz", responses={503: {"description": "loading, or failed (with the error)"}})
def readyz(response: Response, rt: Runtime = Depends(runtime)) -> dict:
    """Ready once every model is loaded and warmed up."""
    if rt.ready.is_set():
        return {"status": "ready", "models": rt.host.names() if rt.host else []}
    response.status_code = 503
    return {"status": "failed" if rt.startup_error else "loading", "error": rt.startup_error}
