"""Narrow dependencies: a route names only the parts of the runtime it uses (`store: StoreDep`), so its
signature says what it touches, and a test can override one part (`app.dependency_overrides[store]`).

Each reads `app.state.runtime` (a Runtime, or cluster mode's ClusterRuntime) through an HTTPConnection, so
the same dependencies serve HTTP routes and WebSockets. None of them declares a parameter: they add nothing
to the OpenAPI schema. They are `async def` although they never wait: FastAPI runs a plain `def` dependency in
its threadpool, a thread hop per dependency per request for an attribute read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from service.alerts.snapshots import AlertSnapshots
from service.alerts.views import LiveView
from service.core.bus import Bus
from service.core.messages import Published
from service.core.metrics import Metrics
from service.core.policy import SourcePolicy
from service.core.settings import Settings
from service.core.store import Store
from service.pipeline.clips import ClipManager
from service.pipeline.host import HostedModel, ModelHost
from service.pipeline.masks import Polygon
from service.pipeline.streams import StreamScoring
from service.runtime import Runtime


class StreamApi(Protocol):
    """What the routes use of one stream: a Stream in a single process, a ClusterStream on an API node."""

    id: str
    live: LiveView

    def describe(self) -> dict[str, Any]: ...
    def start_calibration(self, seconds: float) -> dict[str, Any]: ...
    def calibration_state(self) -> dict[str, Any]: ...
    def reset_calibration(self) -> object: ...
    def set_mask(self, polygons: list[Polygon]) -> dict[str, Any]: ...
    def scoring(self) -> StreamScoring: ...


class StreamsApi(Protocol):
    """What the routes use of the stream manager: StreamManager, or ClusterStreams (rows the coordinator runs)."""

    source_policy: SourcePolicy

    def get(self, id: str) -> StreamApi: ...
    def list(self) -> list[StreamApi]: ...
    def start(
        self, url: str, name: str, model: HostedModel, fps_cap: float | None = None,
        alerts: dict[str, Any] | None = None, *, mask: list[Polygon] | None = None,
    ) -> StreamApi: ...  # fmt: skip
    def delete(self, id: str) -> None: ...


def _runtime(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime


def part(name: str) -> Callable[[HTTPConnection], Awaitable[Any]]:
    """A dependency giving one part of the runtime (`settings`, `store`, ...): a route names what it uses, never
    the whole runtime. Async, so FastAPI reads the attribute without a trip through its thread pool."""

    async def get(conn: HTTPConnection) -> Any:
        return getattr(_runtime(conn), name)

    get.__name__ = name
    return get


settings, metrics, store, snapshots = part("settings"), part("metrics"), part("store"), part("snapshots")
bus, streams, clips = part("bus"), part("streams"), part("clips")


async def announce(conn: HTTPConnection) -> Callable[[Published], None]:
    """Publishing what an operator did to every subscriber (Runtime.announce)."""
    return _runtime(conn).announce


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
AnnounceDep = Annotated[Callable[[Published], None], Depends(announce)]
HostDep = Annotated[ModelHost, Depends(host)]  # ready-gated: 503 until the models are loaded
ReadinessDep = Annotated[Readiness, Depends(readiness)]
