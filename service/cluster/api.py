"""An API node of cluster mode: today's FastAPI app, stateless. Streams are rows in PostgreSQL (the coordinator
runs what is there), alerts are read from PostgreSQL, and scores and alert events arrive from the Redis bus
into the node's own bus (LocalBus fan-out), so every WebSocket on every API node sees every camera.

Uploaded clips are still scored on the API node that received them (its own engine), stored under data_dir.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import threading
import time
import uuid
from typing import Any

import torch

from model.alerts import AlertPolicy
from model.calibration import MIN_FRAMES, Calibration
from model.device import pick_device
from service.alerts.snapshots import AlertSnapshots
from service.alerts.views import LiveView
from service.alerts.webhooks import Webhooks
from service.alerts.writer import AlertWriter
from service.capture.sources import redact
from service.cluster.bus import RedisBus, RedisPublisher
from service.cluster.store import PostgresStore
from service.core.exceptions import StreamLimit, StreamNotFound, UnknownModel
from service.core.messages import AlertClose, AlertOpen, Published, StreamScore
from service.core.metrics import Metrics
from service.core.policy import SourcePolicy
from service.core.settings import Settings
from service.pipeline.calibration import CalibrationBusy
from service.pipeline.clips import ClipManager
from service.pipeline.engine import Engine
from service.pipeline.host import HostedModel, ModelHost
from service.pipeline.masks import Polygon, watched_share, watched_tensor
from service.pipeline.streams import StreamScoring, alert_policy
from service.runtime import Runtime

log = logging.getLogger(__name__)
LIVE_S = 5.0  # a camera whose last score is older than this is reported "connecting"


class ClusterStream:
    """What the routers read of a stream on an API node: its row, and what the bus said of it lately."""

    def __init__(
        self, row: dict[str, Any], seen: dict[str, Any], live: LiveView, mask: list[Polygon], store: PostgresStore,
        model: HostedModel | None, settings: Settings,
    ) -> None:  # fmt: skip
        self.row, self.seen, self.mask, self.store, self.model, self.settings = row, seen, mask, store, model, settings
        self._reset = False  # a reset asked through this object: what its shard will do, answered at once
        self.id = row["id"]
        self.live = live  # recent scores from the bus; pictures stay on the shard: latest.jpg answers 404 here

    def describe(self) -> dict[str, Any]:
        r, seen = self.row, self.seen
        live = seen.get("at") is not None and time.time() - seen["at"] < LIVE_S
        return {
            "id": r["id"], "name": r["name"], "url": redact(r["url"]), "model": r["model"], "origin": "api",
            "fps_cap": r["fps_cap"], "state": "live" if live else "connecting", "last_error": None,
            "fps_in": 0.0, "fps_out": 0.0, "frames_read": 0, "frames_scored": seen.get("frames", 0),
            "frames_dropped": 0, "window_restarts": 0, "reconnects": 0, "reconnect_delay_s": 0.0,
            "last_score": seen.get("score"),
            "calibration": self.calibration_state()["state"] if self.model is not None else "model",
            "alert": {**self.policy, "open": bool(seen.get("in_alert"))},
            "mask": {"polygons": self.mask, "watched": round(watched_share(self.mask), 4)},
        }  # fmt: skip

    @property
    def policy(self) -> dict[str, Any]:
        """The camera's alert thresholds: its own, else the settings', else its calibration's (as a shard has them)."""
        s = self.settings
        if self.model is None:
            return {"on": 1.0, "off": 1.0, "on_frames": s.alert_on_frames, "off_frames": s.alert_off_frames}
        p = alert_policy(s, self.model, self.row["alerts"], self.current()[0])
        return {"on": p.on, "off": p.off, "on_frames": p.on_frames, "off_frames": p.off_frames}

    def _model(self) -> HostedModel:
        if self.model is None:
            raise UnknownModel(self.row["model"], "none of that name on this API node")
        return self.model

    def current(self) -> tuple[Calibration, float | None]:
        """The calibration scoring the camera and when it was fitted: its own (stored by its shard) if fitted for
        its model, else the model's (None)."""
        model = self._model()
        saved = self.store.calibration(self.id)
        if saved is not None and saved["model"] == model.name:
            return Calibration(**saved["calibration"]), saved["fitted_at"]
        return model.calibration, None

    def calibration_state(self) -> dict[str, Any]:
        """As the shard running the camera last told it (at most MNAD_CHECKPOINT_S old); before it has, or
        after a reset asked here, from the stored fit or the model's."""
        told = None if self._reset else self.store.calibration_state(self.id)
        if told is not None:
            return told
        calibration, fitted_at = self.current() if not self._reset else (self._model().calibration, None)
        frames = calibration.frames if fitted_at is not None else 0
        return {"state": "fitted" if fitted_at is not None else "model", "progress": 1.0 if frames else 0.0,
                "frames": frames, "target_frames": frames, "first_frame": None, "last_frame": None,
                "calibration": calibration.to_dict(), "fitted_at": fitted_at}  # fmt: skip

    def start_calibration(self, seconds: float) -> dict[str, Any]:
        """Ask the camera's shard to calibrate on its next `seconds` (it starts within MNAD_CHECKPOINT_S); 409
        while one is collecting. The state answered is the request's; GET follows the shard's progress."""
        state = self.calibration_state()
        if state["state"] == "collecting":
            raise CalibrationBusy(f"a calibration is already collecting ({state['frames']}/{state['target_frames']}"
                                  " frames)")  # fmt: skip
        self.store.request(self.id, "calibrate", seconds)
        model, cap = self._model(), self.row["fps_cap"]
        target = max(MIN_FRAMES, math.ceil(seconds * (min(model.fps, cap) if cap else model.fps)))
        return {**state, "state": "collecting", "progress": 0.0, "frames": 0, "target_frames": target,
                "first_frame": None, "last_frame": None}  # fmt: skip

    def reset_calibration(self) -> None:
        """Ask the camera's shard to go back to the model's calibration (within MNAD_CHECKPOINT_S)."""
        self._model()
        self.store.request(self.id, "reset")
        self._reset = True

    def set_mask(self, polygons: list[Polygon]) -> dict[str, Any]:
        """Store the camera's new mask (MaskRefused before anything is stored); the shard running it reads it at
        its next checkpoint (within MNAD_CHECKPOINT_S), scores without it from then on and says `mask` on the
        camera's socket."""
        watched = watched_share(polygons)
        self.store.set_mask(self.id, polygons)
        self.mask = polygons
        return {"polygons": polygons, "watched": round(watched, 4)}

    def scoring(self) -> StreamScoring:
        """An upload scored as this camera: its model, calibration (its own fit if it has one), alert thresholds
        and mask."""
        model = self._model()
        p = self.policy
        policy = AlertPolicy(p["on"], p["off"], p["on_frames"], p["off_frames"])
        return StreamScoring(self.id, model, self.current()[0], policy, watched_tensor(self.mask, model))


class ClusterStreams:
    """What the routers use of StreamManager (service.api.deps.StreamsApi), on the streams table; the coordinator
    does the running."""

    def __init__(self, settings: Settings, store: PostgresStore, host: Any) -> None:
        self.settings, self.store, self._host = settings, store, host
        self.source_policy = SourcePolicy.parse(settings.source_networks, settings.source_schemes)
        self._seen: dict[str, dict[str, Any]] = {}
        self._views: dict[str, LiveView] = {}  # each camera's recent scores, as the bus brought them
        self._lock = threading.Lock()

    def observe(self, messages: Published) -> None:
        """Bus thread: remember each camera's last score and alert state (the list's live columns)."""
        with self._lock:
            for _, m in messages:
                if isinstance(m, StreamScore):
                    seen = self._seen.setdefault(m.stream, {"frames": 0})
                    seen.update(frames=seen["frames"] + 1, score=m.score, frame=m.frame, in_alert=m.in_alert,
                                at=time.time())  # fmt: skip
                    self._views.setdefault(m.stream, LiveView()).history.append((m.frame, m.captured, m.score))
                elif isinstance(m, AlertOpen | AlertClose):
                    self._seen.setdefault(m.stream, {"frames": 0})["in_alert"] = isinstance(m, AlertOpen)

    def _stream(self, row: dict[str, Any]) -> ClusterStream:
        with self._lock:
            seen = dict(self._seen.get(row["id"], {}))
            live = self._views.setdefault(row["id"], LiveView())
        host = self._host()
        model = host.models.get(row["model"]) if host is not None else None
        return ClusterStream(row, seen, live, self.store.mask(row["id"]), self.store, model, self.settings)

    def get(self, id: str) -> ClusterStream:
        row = self.store.stream(id)
        if row is None:
            raise StreamNotFound(id)
        return self._stream(row)

    def list(self) -> list[ClusterStream]:
        return [self._stream(row) for row in self.store.streams()]

    def start(
        self, url: str, name: str, model: HostedModel, fps_cap: float | None = None,
        alerts: dict[str, Any] | None = None, origin: str = "api", id: str | None = None, persist: bool = True,
        mask: list[Polygon] | None = None,
    ) -> ClusterStream:  # fmt: skip
        """Add the camera to the streams table; the coordinator puts it on a shard within a moment."""
        if len(self.store.streams()) >= self.settings.max_streams:
            raise StreamLimit(self.settings.max_streams)
        id = id or uuid.uuid4().hex[:12]
        watched_share(mask or [])  # refused before anything is stored
        self.store.set_mask(id, mask or [])  # before the row: the shard that runs it reads the mask at start
        self.store.add_stream(id, url, name, model.name, fps_cap, alerts or {})
        return self.get(id)

    def delete(self, id: str) -> None:
        """Remove the camera and its alerts; the coordinator fences and stops its shard's copy."""
        if self.store.stream(id) is None:
            raise StreamNotFound(id)
        self.store.delete_stream(id)
        self.store.delete_alerts(stream_id=id)
        self.store.delete_calibration(id)
        self.store.set_mask(id, [])
        self.store.forget_camera(id)
        with self._lock:  # (a camera deleted through another API node keeps its few recent scores here)
            self._seen.pop(id, None)
            self._views.pop(id, None)

    def stop_all(self) -> None:
        """Nothing runs here."""

    def close_episodes(self, reason: str) -> int:
        """Open episodes belong to cameras that shards run on: an API node stopping closes none."""
        return 0


class ClusterRuntime(Runtime):
    """Runtime of an API node: PostgreSQL store, the bus into the local hub, no cameras of its own."""

    def __init__(self, settings: Settings) -> None:  # replaces Runtime.__init__: no SQLite file here
        assert settings.database_url is not None and settings.bus_url is not None
        self.settings = settings
        self.metrics = Metrics()
        self.store = PostgresStore(settings.database_url.get_secret_value())
        self.bus = RedisBus(settings.bus_url, settings.ws_queue, lambda topic, n: self.metrics.ws_dropped.inc(n),
                            seen=lambda messages: self.streams.observe(messages))  # fmt: skip
        self.engine = Engine(settings.max_batch, settings.max_wait_ms / 1000, self.publish, self.metrics.observe_batch)
        self.snapshots = AlertSnapshots(settings.data_dir / "alerts", self.store)
        self.writer = AlertWriter(self.publish)  # an API node stores no alerts; Runtime.start/stop expect one
        # every shard's alert events, from the outbox in PostgreSQL; each URL sent by one API node at a time
        holder = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"  # this API node, on the bus too
        self.webhooks = Webhooks.from_settings(settings, self.store, self.bus, self.metrics, holder)
        self.announcer = RedisPublisher(settings.bus_url, f"api-{holder}")  # reviews, to every API node
        self.streams = ClusterStreams(settings, self.store, lambda: self.host)  # type: ignore[assignment]
        self.clips = ClipManager(settings.clips_dir, self.store, self.engine, self.metrics, self.publish,
                                 settings.clip_fps, settings.max_scoring_clips)  # fmt: skip
        self.host: ModelHost | None = None
        self.ready = threading.Event()
        self.startup_error: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._janitor: asyncio.Task | None = None

    def recover(self) -> None:
        """Alerts open in PostgreSQL belong to cameras a shard runs (or will resume): an API node closes none."""

    def announce(self, messages: Published) -> None:
        """Through Redis: every API node's subscribers see an operator's review, this node's when it comes back."""
        self.announcer.broadcast(messages)

    async def start(self) -> None:
        await super().start()
        self.bus.start(asyncio.get_running_loop())

    def _load(self) -> None:
        s = self.settings
        try:
            if s.threads:
                torch.set_num_threads(s.threads)
            self.host = ModelHost.load_dir(s.models_dir, pick_device(s.device), s.default_model, s.inference)
            if not self.host.models:
                raise RuntimeError(f"no usable checkpoint in {s.models_dir}: {self.host.errors or 'none found'}")
            if not self.bus.subscriber.subscribed.wait(30):
                raise RuntimeError(f"bus {redact(s.bus_url or '')} not reachable")
            self.ready.set()
            log.info("API node ready: models %s, bus subscribed", sorted(self.host.models))
        except Exception as e:
            self.startup_error = str(e)
            log.exception("startup failed")

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        self.bus.stop()
        self.engine.stop()
        self.writer.stop()
        await self.webhooks.stop()
        self.announcer.close()
        self.store.close()
