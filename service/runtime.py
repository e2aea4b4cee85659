"""The running service: every stage built from the settings and wired source -> subscribers.

Models load in a background thread, so /healthz answers at once and /readyz turns ready after
they are loaded and warmed up; then streams (persisted ones and those given at start) begin.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import torch

from model.device import pick_device
from service.alerts.snapshots import AlertSnapshots
from service.alerts.webhooks import Webhooks
from service.alerts.writer import AlertWriter
from service.capture.sources import is_local_file
from service.core.bus import Bus, LocalBus
from service.core.messages import Published
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.core.store import SqliteStore, Store
from service.pipeline.clips import ClipManager
from service.pipeline.engine import Engine
from service.pipeline.host import ModelHost
from service.pipeline.streams import StreamManager, cli_stream_id

log = logging.getLogger(__name__)

RESTARTED = "service restarted"  # closed_reason of alerts a crash left open
STOPPED = "service stopped"  # closed_reason of alerts open at a clean stop


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store: Store = SqliteStore(settings.database)
        self.bus: Bus = LocalBus(settings.ws_queue, on_drop=lambda topic, n: self.metrics.ws_dropped.inc(n))
        self.engine = Engine(settings.max_batch, settings.max_wait_ms / 1000, self.publish, self.metrics.observe_batch)
        self.snapshots = AlertSnapshots(settings.data_dir / "alerts", self.store)
        self.webhooks = Webhooks.from_settings(settings, self.store, self.bus, self.metrics)
        # alerts, pictures and calibrations, stored off the engine thread; alert events kept for the webhooks
        self.writer = AlertWriter(self.publish, outbox=self.webhooks.outbox())
        self.streams = StreamManager(settings, self.store, self.engine, self.metrics, self.writer, self.snapshots)
        self.clips = ClipManager(
            settings.clips_dir, self.store, self.engine, self.metrics, self.publish, settings.clip_fps,
            settings.max_scoring_clips,
        )  # fmt: skip
        self.host: ModelHost | None = None
        self.ready = threading.Event()
        self.startup_error: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._janitor: asyncio.Task | None = None

    def publish(self, messages: Published) -> None:
        """From any thread: hand messages to the bus on the event loop."""
        if messages and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.bus.publish_many, messages)

    def announce(self, messages: Published) -> None:
        """From any thread: what an operator did (a review) to every subscriber of the service; here the process's
        own (ClusterApi's go to every API node)."""
        self.publish(messages)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # FFmpeg's RTSP over UDP loses packets under load, which corrupts frames: ask for TCP.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        self.recover()
        self.webhooks.start()
        self.writer.start()
        self.engine.start()
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        self._janitor = asyncio.create_task(self._expire_clips())

    def recover(self) -> None:
        """Before anything runs: make the data directory consistent with the database again after a crash
        (or a stop that left alerts open): no clip stuck, no partial upload, no alert open with no stream
        scoring it, no picture of a deleted alert. Metrics start at zero, matching the database then."""
        clips = self.clips.recover()
        closed = self.store.close_open_alerts(time.time(), RESTARTED)
        pictures = self.snapshots.sweep_orphans(self.store.alert_ids())
        if closed or pictures or any(clips.values()):
            log.warning("recovered after an unclean stop: %s, %d alert(s) closed (%r), %d orphan picture(s)",
                        clips, closed, RESTARTED, pictures)  # fmt: skip

    def expire_alerts(self) -> int:
        """Retention: closed alerts past alert_retention_s, then all but the max_alerts newest, with pictures."""
        s = self.settings
        rows = self.store.delete_alerts(ended_before=time.time() - s.alert_retention_s)
        rows += self.store.delete_alerts(keep=s.max_alerts)
        self.snapshots.delete(rows)
        return len(rows)

    def _load(self) -> None:
        s = self.settings
        try:
            if s.threads:
                torch.set_num_threads(s.threads)
            device = pick_device(s.device)
            self.host = ModelHost.load_dir(s.models_dir, device, s.default_model, s.inference)
            if not self.host.models:
                raise RuntimeError(f"no usable checkpoint in {s.models_dir}: {self.host.errors or 'none found'}")
            for m in self.host.models.values():
                info = {"path": str(m.path), "device": str(m.device), "fps": f"{m.fps:g}", "variant": m.config.variant,
                        "size": f"{m.config.height}x{m.config.width}x{m.config.channels}",
                        "commit": str(m.checkpoint.provenance.get("commit")),
                        "inference": m.inference.name, "inference_fallback": m.inference.fallback or ""}  # fmt: skip
                self.metrics.model_info.labels(m.name).info(info)
            for row in self.store.streams():
                if row["model"] not in self.host.models:
                    log.error("stream %s names model %s, which is not loaded; not started", row["id"], row["model"])
                    continue
                self.streams.start(row["url"], row["name"], self.host.models[row["model"]], row["fps_cap"],
                                   row["alerts"], id=row["id"], persist=False)  # fmt: skip
            for i, url in enumerate(s.stream):
                name = f"start-{i}" if not is_local_file(url) else f"file-{i}"
                self.streams.start(url, name, self.host.get(None), origin="cli", id=cli_stream_id(i, url),
                                   persist=False)  # fmt: skip
            self.ready.set()
            log.info("ready: models %s on %s", sorted(self.host.models), device)
        except Exception as e:
            self.startup_error = str(e)
            log.exception("startup failed")

    async def _expire_clips(self) -> None:
        s = self.settings
        period = max(1.0, min(60.0, s.clip_retention_s / 4, s.alert_retention_s / 4))
        while True:
            try:
                await asyncio.to_thread(self.clips.expire, self.settings.clip_retention_s)
                await asyncio.to_thread(self.expire_alerts)
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(period)

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        self.streams.stop_all()
        self.engine.stop()
        self.streams.close_episodes(STOPPED)
        self.writer.stop()  # stores everything handed on, the episodes just closed included
        await self.webhooks.stop()
        self.store.close()
