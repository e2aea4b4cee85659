"""The Ray actors of cluster mode: one Shard per node, and the named Coordinator that puts cameras on shards.

The coordinator reconciles, several times a second, what PostgreSQL wants (the streams table, written by API
nodes) with what runs (the shards' answers to pings): a camera with no live shard is assigned to the live
shard with the fewest cameras, under a new epoch, and that shard resumes it from its checkpoint. A shard is
lost when its actor or node died, or when it answered no ping for `shard_lost_s` (paused, cut off); a lost
shard that comes back is told to release what it no longer owns, and its writes were refused meanwhile.

A node that is stopped cleanly is drained first (`drain`, called by `mnad-cluster node` on SIGTERM): its
shards checkpoint and release their cameras, which then move at once, break before make, so the next shard
continues from the very last frame instead of waiting for a node timeout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from service.cluster.store import PostgresStore
from service.core.settings import Settings

log = logging.getLogger(__name__)

NAMESPACE = "mnad"
COORDINATOR = "coordinator"
STARTUP_S = 120.0  # a new shard loads its models before its first answer
HEAD_RESOURCE = "node:__internal_head__"  # Ray gives the head node this resource


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings as the actors receive them: paths absolute (a Ray worker runs in its own directory)."""
    data = settings.model_dump()
    for key in ("models_dir", "data_dir"):
        data[key] = str(Path(data[key]).resolve())
    data["database_url"] = settings.database_url.get_secret_value() if settings.database_url else None
    data["api_token"] = settings.api_token.get_secret_value() if settings.api_token else None
    return data


@ray.remote(max_restarts=0, max_concurrency=4)
class Shard:
    """A ShardCore in a Ray worker process; max_concurrency lets pings through while a camera starts."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        logging.basicConfig(level=logging.INFO)
        from service.cluster.shard import ShardCore

        self.core = ShardCore(name, Settings(**settings))

    def status(self) -> dict[str, Any]:
        return self.core.status()

    def run(self, stream_id: str, epoch: int, moved: tuple[str, float] | None = None) -> bool:
        return self.core.run(stream_id, epoch, moved)

    def prepare(self, stream_id: str, timeout: float) -> bool:
        return self.core.prepare(stream_id, timeout)

    def release(self, stream_id: str) -> None:
        self.core.release(stream_id)

    def handover(self) -> int:
        return self.core.handover()

    def pid(self) -> int:
        import os

        return os.getpid()


@dataclass(eq=False)
class ShardInfo:
    name: str
    node: str
    handle: Any
    created: float = field(default_factory=time.monotonic)
    last_pong: float | None = None
    ping: Any = None
    cameras: dict[str, int] = field(default_factory=dict)  # as last reported: id -> epoch
    dead: bool = False
    lost_at: float | None = None  # wall clock when it was found lost
    status: dict[str, Any] = field(default_factory=dict)
    requested: dict[str, float] = field(default_factory=dict)  # camera -> when run() was last asked (monotonic)

    def lost(self, now: float, lost_s: float) -> bool:
        if self.dead:
            return True
        if self.last_pong is None:
            return now - self.created > STARTUP_S
        return now - self.last_pong > lost_s

    @property
    def ready(self) -> bool:
        return self.last_pong is not None


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)
class Coordinator:
    def __init__(self, settings: dict[str, Any]) -> None:
        logging.basicConfig(level=logging.INFO)
        self.payload = settings
        self.settings = Settings(**settings)
        self.store = PostgresStore(self.settings.database_url.get_secret_value())
        self.shards: dict[str, ShardInfo] = {}
        self.holding: set[str] = set()  # shards handing their cameras over: nothing of theirs moves yet
        self.drained: set[str] = set()  # shards that handed over: no camera goes to them any more
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="coordinator", daemon=True)
        self._thread.start()

    # the loop ----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("coordinator tick failed")
            took = time.monotonic() - started
            if took > 1.0:  # failover waits on the tick: a slow one shows in the failover time
                log.warning("coordinator tick took %.1f s", took)
            self._stop.wait(0.2)

    def tick(self) -> None:
        now = time.monotonic()
        alive = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
        for info in self.shards.values():
            if info.node not in alive:
                info.dead = True
        for node_id, node in alive.items():
            if not any(i.node == node_id and not i.dead for i in self.shards.values()):
                self._create_shard(node_id, node)
        self._ping(now)
        live = self._live(now)
        for info in self.shards.values():
            if info.name in self.drained:
                continue
            if info.name not in live and info.lost_at is None and (info.ready or info.dead):
                info.lost_at = time.time()
                log.warning("shard %s lost (%s)", info.name, "dead" if info.dead else "silent")
            elif info.name in live:
                info.lost_at = None
        self._reconcile(live)
        self.store.set_shards(self.status())
        for name in [n for n, i in self.shards.items() if i.dead]:
            del self.shards[name]
            self.drained.discard(name)

    def _live(self, now: float, exclude: AbstractSet[str] = frozenset()) -> dict[str, ShardInfo]:
        """Shards that may run cameras: ready, answering pings, not drained (nor in `exclude`)."""
        return {
            n: i for n, i in self.shards.items()
            if i.ready and not i.lost(now, self.settings.shard_lost_s) and n not in self.drained and n not in exclude
        }  # fmt: skip

    @staticmethod
    def _load(live: dict[str, ShardInfo], assigned: dict[str, dict[str, Any]]) -> dict[str, int]:
        """Cameras assigned to each live shard."""
        load = {name: 0 for name in live}
        for row in assigned.values():
            if row["shard"] in load:
                load[row["shard"]] += 1
        return load

    def _place(self, load: dict[str, int]) -> str | None:
        """The shard a camera goes to: the one with the fewest cameras, below capacity (counted in `load`);
        None when every one is full."""
        candidates = [n for n in load if load[n] < self.settings.shard_capacity]
        if not candidates:
            return None
        target = min(candidates, key=lambda n: (load[n], n))
        load[target] += 1
        return target

    def _create_shard(self, node_id: str, node: dict[str, Any]) -> None:
        self._count += 1
        name = f"shard-{node_id[:8]}-{self._count}"
        gpu = node.get("Resources", {}).get("GPU", 0) >= 1
        options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 0} if gpu else {"num_cpus": 1}
        handle = Shard.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False), **options
        ).remote(name, self.payload)
        self.shards[name] = ShardInfo(name, node_id, handle)
        log.info("shard %s created on node %s (%s)", name, node_id[:8], "GPU" if gpu else "CPU")

    def _ping(self, now: float) -> None:
        for info in self.shards.values():
            if info.dead:
                continue
            if info.ping is None:
                info.ping = info.handle.status.remote()
                continue
            ready, _ = ray.wait([info.ping], timeout=0)
            if not ready:
                continue
            try:
                status = ray.get(info.ping)
                info.status, info.last_pong = status, now
                info.cameras = {k: v["epoch"] for k, v in status["cameras"].items()}
            except RayActorError:
                info.dead = True
            except Exception:
                log.exception("ping of %s failed", info.name)
            info.ping = None

    def _reconcile(self, live: dict[str, ShardInfo]) -> None:
        wanted = {row["id"] for row in self.store.streams()}
        assigned = self.store.assignments()
        for stream_id in [s for s in assigned if s not in wanted]:  # deleted cameras
            self.store.unassign(stream_id)
            del assigned[stream_id]
        # A camera a shard runs but no longer owns (moved while the shard was paused or cut off) is not released
        # from here: the shard's own next write under the old epoch is refused and it releases the camera, so
        # a resumed shard never needs the coordinator to stop doing harm. Deleted cameras go the same way
        # (unassign bumped their epoch).
        load = self._load(live, assigned)
        for stream_id in sorted(wanted):
            owner = assigned.get(stream_id)
            if owner is not None and owner["shard"] in self.holding:
                continue  # its shard is checkpointing it for a handover: a move now would refuse that checkpoint
            if owner is not None and owner["shard"] in live:
                info = live[owner["shard"]]
                asked = info.requested.get(stream_id, 0.0)
                if info.cameras.get(stream_id) != owner["epoch"] and time.monotonic() - asked > 10:
                    info.requested[stream_id] = time.monotonic()  # e.g. after the coordinator restarted
                    info.handle.run.remote(stream_id, owner["epoch"])
                continue
            target = self._place(load)
            if target is None:
                continue
            previous = owner["shard"] if owner else None
            lost_at = self.shards[previous].lost_at if previous in self.shards else None
            epoch = self.store.assign(stream_id, target)
            reason = "new" if previous is None else "drain" if previous in self.drained else "shard lost"
            self.store.log_move(stream_id, previous, target, epoch, reason, lost_at)
            moved = None if previous is None else (reason, lost_at or time.time())
            live[target].handle.run.remote(stream_id, epoch, moved)
            live[target].requested[stream_id] = time.monotonic()
            log.info("camera %s -> %s (epoch %d)", stream_id, target, epoch)

    # API ---------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            name: {"node": i.node, "ready": i.ready, "lost": i.lost(now, self.settings.shard_lost_s),
                   "cameras": i.cameras, "refused": i.status.get("refused", 0), "pid": i.status.get("pid"),
                   "metrics_port": i.status.get("metrics_port")}
            for name, i in self.shards.items()
        }  # fmt: skip

    def ready(self) -> bool:
        return True

    def drain(self, shards: list[str], timeout: float = 30.0) -> dict[str, Any]:
        """Hand the cameras of these shards over to the others (a clean node stop), make before break: a target
        shard connects to each camera while the old one still scores it; then the old shards checkpoint and
        release their cameras, and each moves under a new epoch to the shard already connected to it, which
        continues from that checkpoint. Returns once they run elsewhere, or at timeout."""
        started = time.monotonic()
        infos = [self.shards[n] for n in shards if n in self.shards and not self.shards[n].dead]
        names = {i.name for i in infos}
        self.holding.update(names)
        targets: dict[str, str] = {}
        handed: list[str] = []
        try:
            live = self._live(time.monotonic(), exclude=names)
            assigned = self.store.assignments()
            load = self._load(live, assigned)
            for stream_id in sorted(c for i in infos for c in i.cameras):
                target = self._place(load)
                if target is not None:  # else the tick places it later, like any camera without a shard
                    targets[stream_id] = target
            connecting = [live[t].handle.prepare.remote(c, self.settings.open_timeout_s) for c, t in targets.items()]
            ray.wait(connecting, num_returns=len(connecting), timeout=timeout)  # a failed connect is retried by run()
            released = time.time()
            for info in infos:
                cameras = list(info.cameras)
                try:
                    ray.get(info.handle.handover.remote(), timeout=timeout)
                    handed += cameras
                except Exception:  # it died meanwhile: its cameras move as from a lost shard
                    log.exception("handover of %s failed", info.name)
            for stream_id, target in targets.items():
                previous = assigned.get(stream_id, {}).get("shard")
                epoch = self.store.assign(stream_id, target)
                self.store.log_move(stream_id, previous, target, epoch, "drain", None)
                live[target].handle.run.remote(stream_id, epoch, ("drain", released))
                live[target].requested[stream_id] = time.monotonic()
        finally:
            self.drained.update(names)
            self.holding.difference_update(names)
        log.info("drained %s: %d cameras handed over", sorted(names), len(handed))

        def placed() -> dict[str, str]:
            assigned = self.store.assignments()
            return {
                c: a["shard"] for c in handed if (a := assigned.get(c)) is not None and a["shard"] not in names
                and (s := self.shards.get(a["shard"])) is not None and s.cameras.get(c) == a["epoch"]
            }  # fmt: skip

        moved = placed()
        while len(moved) < len(handed) and time.monotonic() - started < timeout:
            time.sleep(0.1)
            moved = placed()
        return {"drained": sorted(names), "handed_over": handed, "moved": moved,
                "seconds": round(time.monotonic() - started, 2)}  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for info in self.shards.values():
            with contextlib.suppress(Exception):
                ray.kill(info.handle)


def start(settings: Settings, wait_shards: int = 0, timeout: float = 180.0) -> Any:
    """Join the Ray cluster and start the named coordinator (or find the running one)."""
    if not ray.is_initialized():
        ray.init(address=settings.ray_address or "auto", namespace=NAMESPACE, log_to_driver=False)
    # On the head, whatever node this command runs on: the head already holds the cluster's state (GCS), and a
    # coordinator on a worker died with it, taking every shard along (actors share their owner's fate).
    coordinator = Coordinator.options(
        name=COORDINATOR, lifetime="detached", get_if_exists=True, resources={HEAD_RESOURCE: 0.001},
    ).remote(settings_payload(settings))  # fmt: skip
    ray.get(coordinator.ready.remote(), timeout=60)
    deadline = time.monotonic() + timeout
    while wait_shards:
        status = ray.get(coordinator.status.remote(), timeout=30)
        if sum(1 for s in status.values() if s["ready"] and not s["lost"]) >= wait_shards:
            break
        if time.monotonic() > deadline:
            raise GetTimeoutError(f"fewer than {wait_shards} shards ready in {timeout} s: {status}")
        time.sleep(0.5)
    return coordinator
