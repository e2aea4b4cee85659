"""Live streams: a reader feeding an engine lane, an alert machine, a calibration and a WebSocket topic each."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from model.calibration import Calibration
from service.alerts.episodes import Episodes
from service.alerts.machine import AlertPolicy
from service.alerts.snapshots import AlertSnapshots
from service.alerts.views import LiveView, View
from service.alerts.writer import AlertWriter
from service.capture.buffer import FrameBuffer
from service.capture.sources import Reader, ReaderHooks, limit_probe, redact
from service.core.exceptions import StreamLimit, StreamNotFound
from service.core.messages import AlertThresholds, Calibrated, Masked, Published, StreamScore
from service.core.metrics import Metrics
from service.core.policy import SourcePolicy
from service.core.settings import Settings
from service.core.store import Store
from service.pipeline.calibration import StreamCalibration
from service.pipeline.engine import Engine, Lane, Scored
from service.pipeline.host import HostedModel
from service.pipeline.masks import Polygon, watched_share, watched_tensor

log = logging.getLogger(__name__)


def stream_topic(stream_id: str) -> str:
    return f"stream:{stream_id}"


def cli_stream_id(index: int, url: str) -> str:
    """A start-time stream keeps its id across restarts (same place in the list, same URL): its own
    calibration, stored under that id, comes back with it, and its metrics keep their label."""
    return hashlib.sha256(f"{index}\n{url}".encode()).hexdigest()[:12]


def alert_policy(
    settings: Settings,
    model: HostedModel,
    overrides: dict[str, Any] | None = None,
    calibration: Calibration | None = None,
) -> AlertPolicy:
    """Per-stream values, else the settings', else the calibration's (the stream's own once fitted, else the
    checkpoint's). A threshold taken from the calibration yields to an explicit one: a fit never makes
    `on` fall below an `off` the user set, nor `off` rise above their `on`. A function of the settings alone,
    so an uploaded clip and an API node of cluster mode (no StreamManager there) get the same values."""
    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    s = settings
    calibration = calibration or model.calibration
    on_set, off_set = o.get("on", s.alert_on), o.get("off", s.alert_off)
    on = on_set if on_set is not None else calibration.alert_on
    off = off_set if off_set is not None else calibration.alert_off
    if on_set is None:
        on = max(on, off)
    return AlertPolicy(on, min(off, on), o.get("on_frames", s.alert_on_frames), o.get("off_frames", s.alert_off_frames))


@dataclass(frozen=True)
class StreamScoring:
    """A stream's model, calibration, alert thresholds and mask at one moment: an upload of that camera's footage
    is scored with them (POST /api/clips?stream=)."""

    stream: str
    model: HostedModel
    calibration: Calibration
    policy: AlertPolicy
    watched: torch.Tensor | None


@dataclass(eq=False)
class Stream:
    id: str
    url: str
    name: str
    model: HostedModel
    fps_cap: float | None
    policy: AlertPolicy
    origin: str  # "api" (persisted) or "cli" (given at start)
    store: Store
    metrics: Metrics
    writer: AlertWriter  # stores what the engine thread must not wait for: alerts, pictures, calibrations
    snapshots: AlertSnapshots | None = None
    episodes: Episodes = field(init=False)
    reader: Reader | None = None
    lane: Lane | None = None
    frames_scored: int = 0
    last_score: float | None = None
    live: LiveView = field(default_factory=LiveView)
    calibration: StreamCalibration | None = None  # None: scores with the model's, fixed (unit tests)
    policy_for: Callable[[Calibration], AlertPolicy] | None = None  # the stream's alert policy under a calibration
    mask: list[Polygon] = field(default_factory=list)  # what the score ignores (service.pipeline.masks)
    watched: float = 1.0  # the share of the frame the score looks at under `mask`
    _calibration_lock: threading.Lock = field(default_factory=threading.Lock)  # engine thread vs API

    def __post_init__(self) -> None:
        self.episodes = Episodes(self.id, self.name, self.model.name, stream_topic(self.id), self.policy, self.store,
                                 self.writer, self.snapshots)  # fmt: skip

    @property
    def sample_fps(self) -> float:
        """Frames per second the stream scores: the model's rate, or the cap below it."""
        return min(self.model.fps, self.fps_cap) if self.fps_cap else self.model.fps

    def on_scored(self, s: Scored) -> Published:
        """Engine thread: count, run the alert episodes, and build the messages for subscribers. Nothing here
        waits on the disk: alerts, pictures and calibrations are handed to the alert writer."""
        self.frames_scored += 1
        self.last_score = s.score
        self.metrics.frames_scored.labels(self.id).inc()
        picture = s.frame.image if s.frame.image is not None else s.frame.pixels
        view = View(s.frame.index, s.frame.captured, s.score, picture, s.error, s.box)
        self.live.add(view)
        if self.episodes.update(view) == "open":
            self.metrics.alerts.labels(self.id).inc()
        self.metrics.anomaly_score.labels(self.id).set(s.score)
        self.metrics.alert_open.labels(self.id).set(1 if self.episodes.open else 0)
        topic = stream_topic(self.id)
        messages: Published = [(topic, StreamScore(
            stream=self.id, frame=s.frame.index, captured=s.frame.captured,
            score=s.score, psnr=s.psnr, distance=s.distance,
            region_psnr=s.region_psnr, region_distance=s.region_distance, box=s.box,
            anomalous=s.score >= self.policy.on, in_alert=self.episodes.open,
        ))]  # fmt: skip
        if self.calibration is not None:
            with self._calibration_lock:
                if self.calibration.add(s.frame.index, s.region_psnr, s.region_distance) is not None:
                    self._use_calibration()
        return messages

    # calibration on the stream's own footage (pipeline/calibration.py) ------------------------------------
    def _own(self) -> StreamCalibration:
        if self.calibration is None:
            raise LookupError(f"stream {self.id} has no calibration of its own")
        return self.calibration

    def _use_calibration(self) -> None:
        """Score and alert with the calibration now in force; the writer stores it (or its removal), then tells
        subscribers. Caller holds the calibration lock; the frame that completed a fit was scored with the
        previous one."""
        own = self._own()
        current = own.current
        if self.lane is not None:
            self.lane.calibration = current
        if self.policy_for is not None:
            self.policy = self.policy_for(current)
            self.episodes.use_policy(self.policy)
        if own.fitted is not None:
            write = partial(self.store.set_calibration, self.id, self.model.name, current.to_dict(),
                            own.fitted_at or 0.0)  # fmt: skip
            self.metrics.calibrations.labels(self.id).inc()
            log.info("stream %s calibrated on %d frames: alert on/off %.3f/%.3f", self.id, current.frames,
                     self.policy.on, self.policy.off)  # fmt: skip
        else:
            write = partial(self.store.delete_calibration, self.id)
        alert = AlertThresholds(on=self.policy.on, off=self.policy.off)
        self.writer.submit(
            [write], [(stream_topic(self.id), Calibrated(stream=self.id, **own.describe(), alert=alert))]
        )

    def calibration_state(self) -> dict[str, Any]:
        with self._calibration_lock:
            return self._own().describe()

    def start_calibration(self, seconds: float) -> dict[str, Any]:
        """The next `seconds` of scored frames are normal (the operator's word): collect them, then fit.
        Raises CalibrationBusy while one is collecting."""
        with self._calibration_lock:
            own = self._own()
            own.start(math.ceil(seconds * self.sample_fps))
            return own.describe()

    def reset_calibration(self) -> None:
        """Back to the checkpoint's calibration and thresholds (a collection in progress is dropped). API thread:
        returns once the removal is stored and the `calibrated` message published."""
        with self._calibration_lock:
            self._own().reset()
            self._use_calibration()
        self.writer.flush()

    # the mask (pipeline/masks.py) ----------------------------------------------------------------------------
    def use_mask(self, polygons: list[Polygon]) -> None:
        """Score without these polygons from the next frame on; MaskRefused (nothing changed) if they leave too
        little of the frame."""
        self.watched = watched_share(polygons)
        self.mask = polygons
        if self.lane is not None:
            self.lane.watched = watched_tensor(polygons, self.model)

    def set_mask(self, polygons: list[Polygon]) -> dict[str, Any]:
        """use_mask, stored and told to subscribers. API thread: returns once the mask is stored and the `mask`
        message published."""
        self.use_mask(polygons)
        log.info("stream %s: mask of %d polygons, %.1f%% of the frame watched", self.id, len(polygons),
                 100 * self.watched)  # fmt: skip
        self.writer.submit([partial(self.store.set_mask, self.id, polygons)],
                           [(stream_topic(self.id), Masked(stream=self.id, **self.describe_mask()))])  # fmt: skip
        self.writer.flush()
        return self.describe_mask()

    def scoring(self) -> StreamScoring:
        """How this stream scores a frame now: what an upload "scored as this stream" takes."""
        with self._calibration_lock:
            calibration = self._own().current if self.calibration is not None else self.model.calibration
            return StreamScoring(self.id, self.model, calibration, self.policy, watched_tensor(self.mask, self.model))

    def describe_mask(self) -> dict[str, Any]:
        return {"polygons": self.mask, "watched": round(self.watched, 4)}

    def end(self, reason: str | None = None) -> bool:
        """The stream stops (the engine no longer scores it): an open episode ends, stored with `reason` and its
        picture (nothing is published). Whether one was open."""
        return self.episodes.end(reason)

    def forget_calibration(self) -> None:
        """The stream is being deleted: its own calibration goes, under the calibration lock, so a fit in flight
        on the engine thread cannot be stored after this (the writer stores in order)."""
        with self._calibration_lock:
            if self.calibration is not None:
                self.calibration.reset()
            self.writer.submit([partial(self.store.delete_calibration, self.id)])

    def describe(self) -> dict[str, Any]:
        r = self.reader
        dropped = self.lane.buffer.dropped if self.lane else 0
        return {
            "id": self.id, "name": self.name, "url": redact(self.url), "model": self.model.name,
            "origin": self.origin, "fps_cap": self.fps_cap,
            "state": r.state if r else "stopped", "last_error": r.last_error if r else None,
            "fps_in": round(r.fps_in.rate(), 2) if r else 0.0, "fps_out": round(r.fps_out.rate(), 2) if r else 0.0,
            "frames_read": r.frames_read if r else 0, "frames_scored": self.frames_scored,
            "frames_dropped": dropped, "window_restarts": self.lane.gaps if self.lane else 0,
            "reconnects": r.reconnects if r else 0, "reconnect_delay_s": r.backoff_s if r else 0.0,
            "last_score": self.last_score,
            "calibration": self.calibration.state if self.calibration is not None else "model",
            "mask": self.describe_mask(),
            "alert": {"on": self.policy.on, "off": self.policy.off, "on_frames": self.policy.on_frames,
                      "off_frames": self.policy.off_frames, "open": self.episodes.open},
        }  # fmt: skip


@dataclass(eq=False)
class StreamManager:
    settings: Settings
    store: Store
    engine: Engine
    metrics: Metrics
    writer: AlertWriter
    snapshots: AlertSnapshots | None = None
    source_policy: SourcePolicy = field(init=False)
    _streams: dict[str, Stream] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.source_policy = SourcePolicy.parse(self.settings.source_networks, self.settings.source_schemes)
        limit_probe(self.settings.probe_ms)

    def get(self, id: str) -> Stream:
        """The stream with this id; StreamNotFound if there is none."""
        stream = self._streams.get(id)
        if stream is None:
            raise StreamNotFound(id)
        return stream

    def list(self) -> list[Stream]:
        """Every stream, in the order they were started."""
        return list(self._streams.values())

    def policy(
        self, model: HostedModel, overrides: dict[str, Any] | None = None, calibration: Calibration | None = None
    ) -> AlertPolicy:
        """alert_policy under this manager's settings."""
        return alert_policy(self.settings, model, overrides, calibration)

    def own_calibration(self, id: str, model: HostedModel) -> StreamCalibration:
        """The model's calibration, or the one this stream fitted before a restart (if for the same model)."""
        own = StreamCalibration(model.calibration)
        saved = self.store.calibration(id)
        if saved is None:
            return own
        if saved["model"] != model.name:
            log.warning("stream %s: stored calibration is for model %s, not %s: dropped", id, saved["model"],
                        model.name)  # fmt: skip
            self.store.delete_calibration(id)
            return own
        try:
            own.restore(Calibration(**saved["calibration"]), saved["fitted_at"])
        except TypeError as e:
            log.error("stream %s: stored calibration unreadable (%s): using the model's", id, e)
        return own

    def reader(
        self, id: str, url: str, model: HostedModel, fps: float, buffer: FrameBuffer | None, hooks: ReaderHooks | None,
        origin: str = "api",
    ) -> Reader:  # fmt: skip
        """A reader of `url` for stream `id` (not started), under this service's timeouts and source policy."""
        s = self.settings
        return Reader(
            url, model.config, fps, buffer, open_timeout_s=s.open_timeout_s, read_timeout_s=s.read_timeout_s,
            backoff_initial_s=s.reconnect_initial_s, backoff_max_s=s.reconnect_max_s,
            healthy_s=s.reconnect_healthy_s, hooks=hooks, name=f"reader-{id}", policy=self.source_policy,
            local_ok=origin == "cli",
        )  # fmt: skip

    def start(
        self, url: str, name: str, model: HostedModel, fps_cap: float | None = None,
        alerts: dict[str, Any] | None = None, origin: str = "api", id: str | None = None, persist: bool = True,
        standby: Reader | None = None, mask: list[Polygon] | None = None,
    ) -> Stream:  # fmt: skip
        """Start scoring a stream; `standby`: a reader of it already connected (see Reader.attach) to take over;
        `mask`: polygons the score ignores (None: the stream's stored mask, if any)."""
        with self._lock:
            if len(self._streams) >= self.settings.max_streams:
                raise StreamLimit(self.settings.max_streams)
            id = id or uuid.uuid4().hex[:12]
            own = self.own_calibration(id, model)
            policy = self.policy(model, alerts, own.current)
            stream = Stream(id, url, name, model, fps_cap, policy, origin, self.store, self.metrics, self.writer,
                            self.snapshots, calibration=own,
                            policy_for=lambda c: self.policy(model, alerts, c))  # fmt: skip
            stream.use_mask(self.store.mask(id) if mask is None else mask)  # refused before anything is stored
            if persist:
                self.store.add_stream(id, url, name, model.name, fps_cap, alerts or {})
            if mask:
                self.store.set_mask(id, mask)
            self._streams[id] = stream
        s, m = self.settings, self.metrics
        stream.lane = self.engine.add_lane(
            f"stream:{id}", model, s.frame_buffer, stream, own.current, s.max_lag_ms / 1000
        )
        stream.lane.watched = watched_tensor(stream.mask, model)  # the mask checked above, now on the lane
        hooks = ReaderHooks(
            read=m.frames_read.labels(id).inc, dropped=m.frames_dropped.labels(id).inc,
            error=m.decode_errors.labels(id).inc, reconnect=m.reconnects.labels(id).inc,
            up=lambda up: m.stream_up.labels(id).set(1 if up else 0),
            backoff=m.reconnect_delay.labels(id).set,
            refused=m.sources_refused.labels("connect").inc,
        )  # fmt: skip
        m.frames_scored.labels(id)
        m.frames_dropped.labels(id)
        m.reconnects.labels(id)
        m.stream_up.labels(id).set(0)
        m.reconnect_delay.labels(id).set(0)
        if standby is not None:
            stream.reader = standby
            standby.attach(stream.lane.buffer, hooks)
        else:
            stream.reader = self.reader(id, url, model, stream.sample_fps, stream.lane.buffer, hooks, origin)
            stream.reader.start()
        log.info("stream %s (%s) started: %s, model %s", id, name, redact(url), model.name)
        return stream

    def delete(self, id: str) -> None:
        """Stop the stream and remove it with its alerts, pictures, calibration and metric series.
        StreamNotFound if there is none."""
        with self._lock:
            stream = self._streams.pop(id, None)
        if stream is None:
            raise StreamNotFound(id)
        if stream.reader is not None:
            stream.reader.stop()
        self.engine.remove_lane(stream_topic(id))  # returns once no engine step scores the stream any more
        stream.end()
        stream.forget_calibration()

        def forget() -> None:  # after the stream's last writes, in the writer's order
            if stream.origin == "api":
                self.store.delete_stream(id)
            self.store.set_mask(id, [])
            removed = self.store.delete_alerts(stream_id=id)  # its alerts and their pictures go with it
            if self.snapshots is not None:
                self.snapshots.delete(removed)

        self.writer.call(forget)
        self.metrics.forget_stream(id)

    def stop_all(self) -> None:
        for stream in list(self._streams.values()):
            if stream.reader is not None:
                stream.reader.stop()

    def close_episodes(self, reason: str) -> int:
        """On a clean stop (after the engine stopped): open episodes end at their last frame above `off`, with
        the reason, instead of staying open in the database until the next start. Handed to the writer, which
        stores them before it stops."""
        return sum(stream.end(reason) for stream in list(self._streams.values()))
