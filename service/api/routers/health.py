from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import ReadinessDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(state: ReadinessDep) -> dict:
    """Liveness: the process answers (always 200). Also says whether it is ready yet, for pages that
    poll it: a browser logs every 503 from /readyz as an error."""
    return {"status": "ok", "ready": state.ready, "models": state.models, "error": state.error}


@router.get("/readyz", responses={503: {"description": "loading, or failed (with the error)"}})
def readyz(response: Response, state: ReadinessDep) -> dict:
    """Ready once every model is loaded and warmed up."""
    if state.ready:
        return {"status": "ready", "models": state.models}
    response.status_code = 503
    return {"status": "failed" if state.error else "loading", "error": state.error}
