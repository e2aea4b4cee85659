"""App factory: everything hangs off one Runtime built from one Settings object; nothing global."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.auth import require_origin, require_token
from service.api.deps import BusDep, MetricsDep
from service.api.errors import ErrorOut, responses, status_for
from service.api.routers import alerts, clips, dashboard, health, models, streams, ws
from service.core.exceptions import DomainError
from service.core.settings import Settings
from service.runtime import Runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings) if settings.mode == "single" else _cluster_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="Video anomaly detection", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health.router)
    protected = [Depends(require_origin), Depends(require_token)]
    for router in (models.router, streams.router, alerts.router, clips.router):
        app.include_router(router, dependencies=protected, responses=responses(400, 401, 403, 404, 422, 503))
    app.include_router(ws.router)  # checks the token itself, before the handshake is accepted
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.static_files(), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, but JSON-safe: a NaN or Infinity in the body (Python's json accepts them) used to
        come back in the error's `input` and make the error response itself fail with a 500."""
        runtime.metrics.refused.labels("invalid").inc()
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        """Every error a manager raises (unknown model, stream not found, stream limit, unreadable video...),
        as its status (service.api.errors.STATUS) and the error body."""
        return JSONResponse(ErrorOut(detail=str(exc)).model_dump(), status_code=status_for(exc))

    @app.get("/metrics", include_in_schema=False)
    def metrics(m: MetricsDep, bus: BusDep) -> Response:
        m.ws_clients.set(bus.subscribers())
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _cluster_runtime(settings: Settings) -> Runtime:
    """An API node of cluster mode (docs/cluster.md); imported only then, as it needs the cluster extra."""
    try:
        from service.cluster.api import ClusterRuntime
    except ImportError as e:
        raise RuntimeError(f"MNAD_MODE=cluster needs the cluster extra (pip install '.[cluster]'): {e}") from e
    return ClusterRuntime(settings)


def _json_safe(value: Any) -> Any:
    """Non-finite floats as the strings 'NaN', 'Infinity', '-Infinity' (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
