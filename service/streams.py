"""Live streams: a reader feeding an engine lane, an alert machine, and a WebSocket topic each."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from service.alerts import AlertMachine, AlertPolicy
from service.engine import Engine, Lane, Scored
from service.metrics import Metrics
from service.models import HostedModel
from service.settings import Settings
from service.sources import Reader, ReaderHooks, redact
from service.store import Store
from service.views import AlertSnapshots, LiveView, View

log = logging.getLogger(__name__)

ALERTS_TOPIC = "alerts"
PEAK_REFRESH_S = 2.0  # an open alert's stored peak (row, thumbnail, heatmap) lags the live one by at most this


def stream_topic(stream_id: str) -> str:
    return f"stream:{stream_id}"


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
    machine: AlertMachine = field(init=False)
    snapshots: AlertSnapshots | None = None
    reader: Reader | None = None
    lane: Lane | None = None
    frames_scored: int = 0
    last_score: float | None = None
    live: LiveView = field(default_factory=LiveView)
    _candidate: View | None = None  # best frame of the run above `on` that may open an episode
    _peak: View | None = None  # the open episode's peak frame
    _saved_peak: int | None = None  # frame whose snapshot the open episode has stored
    _saved_at: float = 0.0  # when (capture time) it was stored

    def __post_init__(self) -> None:
        self.machine = AlertMachine(self.policy)

    def _track_peak(self, view: View, event: tuple[str, Any] | None, was_open: bool) -> None:
        """Keep (references to) the frame an episode would show: the peak of the opening run, then any higher."""
        episode = self.machine.episode
        if event is not None and event[0] == "open":
            c = self._candidate
            self._peak = c if c is not None and c.frame == event[1].peak_frame else view
            self._candidate = None
        elif episode is not None and episode.peak_frame == view.frame:
            self._peak = view
        if not was_open and episode is None:  # mirror the machine's pending run
            above = view.score >= self.policy.on
            if not above:
                self._candidate = None
            elif self._candidate is None or view.score > self._candidate.score:
                self._candidate = view

    def on_scored(self, s: Scored) -> list[tuple[str, dict[str, Any]]]:
        """Engine thread: count, run the alert machine, and build the messages for subscribers."""
        self.frames_scored += 1
        self.last_score = s.score
        self.metrics.frames_scored.labels(self.id).inc()
        picture = s.frame.image if s.frame.image is not None else s.frame.pixels
        view = View(s.frame.index, s.frame.captured, s.score, picture, s.error)
        self.live.add(view)
        was_open = self.machine.episode is not None
        event = self.machine.update(s.frame.index, s.frame.captured, s.score)
        self._track_peak(view, event, was_open)
        self._refresh_peak(view.captured)
        self.metrics.anomaly_score.labels(self.id).set(s.score)
        self.metrics.alert_open.labels(self.id).set(0 if self.machine.episode is None else 1)
        topic = stream_topic(self.id)
        messages: list[tuple[str, dict[str, Any]]] = [(topic, {
            "type": "score", "stream": self.id, "frame": s.frame.index, "captured": s.frame.captured,
            "score": s.score, "psnr": s.psnr, "distance": s.distance,
            "anomalous": s.score >= self.policy.on, "in_alert": self.machine.episode is not None,
        })]  # fmt: skip
        if event is not None:
            messages += self._alert_event(*event)
        return messages

    def _alert_event(self, kind: str, episode) -> list[tuple[str, dict[str, Any]]]:
        if kind == "open":
            episode.id = self.store.open_alert(
                self.id,
                self.model.name,
                episode.start_time,
                episode.start_frame,
                episode.peak_score,
                episode.peak_frame,
            )
            self.metrics.alerts.labels(self.id).inc()
        elif episode.id is not None:
            self.store.close_alert(
                episode.id, episode.end_time, episode.end_frame, episode.peak_score, episode.peak_frame
            )
        peak = self._peak
        stored = self.snapshots is not None and episode.id is not None and peak is not None
        if stored and peak.frame != self._saved_peak:
            self.snapshots.save(episode.id, peak)
        self._saved_peak = peak.frame if kind == "open" and peak is not None else None
        self._saved_at = episode.start_time if kind == "open" else 0.0
        if kind == "close":
            self._peak = None
        urls = {"thumbnail_url": None, "heatmap_url": None}
        if stored:
            urls = {"thumbnail_url": f"/api/alerts/{episode.id}/thumbnail.jpg",
                    "heatmap_url": f"/api/alerts/{episode.id}/heatmap.png"}  # fmt: skip
        message = {"type": f"alert_{kind}", "stream": self.id, "name": self.name, **episode.as_dict(), **urls}
        return [(stream_topic(self.id), message), (ALERTS_TOPIC, dict(message))]

    def _refresh_peak(self, now: float) -> None:
        """While an episode lasts, its row and picture follow a rising peak, at most every PEAK_REFRESH_S."""
        episode, peak = self.machine.episode, self._peak
        if episode is None or episode.id is None or self.snapshots is None or peak is None:
            return
        if peak.frame == self._saved_peak or now - self._saved_at < PEAK_REFRESH_S:
            return
        self.store.update_alert_peak(episode.id, episode.peak_score, episode.peak_frame)
        self.snapshots.save(episode.id, peak)
        self._saved_peak, self._saved_at = peak.frame, now

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
            "reconnects": r.reconnects if r else 0, "last_score": self.last_score,
            "alert": {"on": self.policy.on, "off": self.policy.off, "on_frames": self.policy.on_frames,
                      "off_frames": self.policy.off_frames, "open": self.machine.episode is not None},
        }  # fmt: skip


class StreamManager:
    def __init__(
        self, settings: Settings, store: Store, engine: Engine, metrics: Metrics,
        snapshots: AlertSnapshots | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.store = store
        self.engine = engine
        self.metrics = metrics
        self.snapshots = snapshots
        self.streams: dict[str, Stream] = {}
        self._lock = threading.Lock()

    def policy(self, model: HostedModel, overrides: dict[str, Any] | None = None) -> AlertPolicy:
        """Per-stream values, else the settings', else the checkpoint's calibration."""
        o = {k: v for k, v in (overrides or {}).items() if v is not None}
        s = self.settings
        on = o.get("on", s.alert_on if s.alert_on is not None else model.calibration.alert_on)
        off = o.get("off", s.alert_off if s.alert_off is not None else model.calibration.alert_off)
        return AlertPolicy(
            on, min(off, on), o.get("on_frames", s.alert_on_frames), o.get("off_frames", s.alert_off_frames)
        )

    def start(
        self, url: str, name: str, model: HostedModel, fps_cap: float | None = None,
        alerts: dict[str, Any] | None = None, origin: str = "api", id: str | None = None, persist: bool = True,
    ) -> Stream:  # fmt: skip
        with self._lock:
            if len(self.streams) >= self.settings.max_streams:
                raise OverflowError(f"stream limit reached ({self.settings.max_streams}, setting max_streams)")
            id = id or uuid.uuid4().hex[:12]
            policy = self.policy(model, alerts)
            stream = Stream(id, url, name, model, fps_cap, policy, origin, self.store, self.metrics, self.snapshots)
            if persist:
                self.store.add_stream(id, url, name, model.name, fps_cap, alerts or {})
            self.streams[id] = stream
        s, m = self.settings, self.metrics
        stream.lane = self.engine.add_lane(f"stream:{id}", model, s.frame_buffer, stream)
        hooks = ReaderHooks(
            read=m.frames_read.labels(id).inc, dropped=m.frames_dropped.labels(id).inc,
            error=m.decode_errors.labels(id).inc, reconnect=m.reconnects.labels(id).inc,
            up=lambda up: m.stream_up.labels(id).set(1 if up else 0),
        )  # fmt: skip
        m.frames_scored.labels(id)
        m.frames_dropped.labels(id)
        m.reconnects.labels(id)
        m.stream_up.labels(id).set(0)
        fps = min(model.fps, fps_cap) if fps_cap else model.fps
        stream.reader = Reader(
            url, model.config, fps, stream.lane.buffer, open_timeout_s=s.open_timeout_s,
            read_timeout_s=s.read_timeout_s, backoff_initial_s=s.reconnect_initial_s,
            backoff_max_s=s.reconnect_max_s, hooks=hooks, name=f"reader-{id}",
        )  # fmt: skip
        stream.reader.start()
        log.info("stream %s (%s) started: %s, model %s", id, name, redact(url), model.name)
        return stream

    def delete(self, id: str) -> None:
        with self._lock:
            stream = self.streams.pop(id)
        if stream.reader is not None:
            stream.reader.stop()
        self.engine.remove_lane(f"stream:{id}")
        if stream.machine.episode is not None:
            stream._alert_event(*stream.machine.flush())
        if stream.origin == "api":
            self.store.delete_stream(id)
        self.metrics.forget_stream(id)

    def stop_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.reader is not None:
                stream.reader.stop()
