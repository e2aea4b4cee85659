"""App factory: everything hangs off one Runtime built from one Settings object; nothing global."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.auth import require_token
from service.routers import alerts, clips, dashboard, health, models, streams, ws
from service.runtime import Runtime
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)

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
    protected = [Depends(require_token)]
    for router in (models.router, streams.router, alerts.router, clips.router):
        app.include_router(router, dependencies=protected)
    app.include_router(ws.router)  # checks the token itself, before the handshake is accepted
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.static_files(), name="static")

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        rt.metrics.ws_clients.set(rt.hub.subscribers())
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
