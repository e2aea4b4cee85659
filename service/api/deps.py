"""Narrow dependencies: a route names only the parts of the runtime it uses (`store: StoreDep`), so its
signature says what it touches, and a test can override one part (`app.dependency_overrides[store]`).

Each reads `app.state.runtime` (a Runtime, or cluster mode's ClusterRuntime) through an HTTPConnection, so
the same dependencies serve HTTP routes and WebSockets. None of them declares a parameter: they add nothing
to the OpenAPI schema. They are `async def` although they never wait: FastAPI runs a plain `def` dependency in
its threadpool, a thread hop per dependency per request for an attribute read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from service.alerts.snapshots import AlertSnapshots
from service.alerts.views import LiveView
from service.core.bus import Bus
from service.core.metrics import Metrics
from service.core.policy import SourcePolicy
from service.core.settings import Settings
from service.core.store import Store
from service.pipeline.clips import ClipManager
from service.pipeline.host import HostedModel, ModelHost
from service.runtime import Runtime


class StreamApi(Protocol):
    """What the routes use of one stream: a Stream in a single process, a ClusterStream on an API node."""

    id: str
    live: LiveView

    def describe(self) -> dict[str, Any]: ...
    def start_calibration(self, seconds: float) -> dict[str, Any]: ...
    def calibration_state(self) -> dict[str, Any]: ...
    def reset_calibration(self) -> object: ...


class StreamsApi(Protocol):
    """What the routes use of the stream manager: StreamManager, or ClusterStreams (rows the coordinator runs)."""

    source_policy: SourcePolicy

    def get(self, id: str) -> StreamApi: ...
    def list(self) -> list[StreamApi]: ...
    def start(
        self, url: str, name: str, model: HostedModel, fps_cap: float | None = None,
        alerts: dict[str, Any] | None = None,
    ) -> StreamApi: ...  # fmt: skip
    def delete(self, id: str) -> None: ...


def _runtime(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime


async def settings(conn: HTTPConnection) -> Settings:
    return _runtime(conn).settings


async def metrics(conn: HTTPConnection) -> Metrics:
    return _runtime(conn).metrics


async def store(conn: HTTPConnection) -> Store:
    return _runtime(conn).store


async def snapshots(conn: HTTPConnection) -> AlertSnapshots:
    return _runtime(conn).snapshots


async def bus(conn: HTTPConnection) -> Bus:
    return _runtime(conn).bus


async def streams(conn: HTTPConnection) -> StreamsApi:
    return _runtime(conn).streams


async def clips(conn: HTTPConnection) -> ClipManager:
    return _runtime(conn).clips


async def host(conn: HTTPConnection) -> ModelHost:
    """The loaded models. The gate of every route that needs them: 503 while they load, or with the error
    if loading failed (the host exists only then, so nothing can use a half-loaded one)."""
    rt = _runtime(conn)
    if not rt.ready.is_set() or rt.host is None:
        raise HTTPException(503, rt.startup_error or "models are still loading")
    return rt.host


@dataclass(frozen=True)
class Readiness:
    """What the health probes report, read once per request: ready or not, the models once ready, and the
    startup error if loading failed."""

    ready: bool
    models: list[str]
    error: str | None


async def readiness(conn: HTTPConnection) -> Readiness:
    rt = _runtime(conn)
    ready = rt.ready.is_set()
    return Readiness(ready, rt.host.names() if ready and rt.host else [], rt.startup_error)


SettingsDep = Annotated[Settings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
StoreDep = Annotated[Store, Depends(store)]
SnapshotsDep = Annotated[AlertSnapshots, Depends(snapshots)]
BusDep = Annotated[Bus, Depends(bus)]
StreamsDep = Annotated[StreamsApi, Depends(streams)]
ClipsDep = Annotated[ClipManager, Depends(clips)]
HostDep = Annotated[ModelHost, Depends(host)]  # ready-gated: 503 until the models are loaded
ReadinessDep = Annotated[Readiness, Depends(readiness)]
