from __future__ import annotations

from fastapi import HTTPException, Request

from service.runtime import Runtime


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def ready_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    if not rt.ready.is_set():
        raise HTTPException(503, rt.startup_error or "models are still loading")
    return rt
