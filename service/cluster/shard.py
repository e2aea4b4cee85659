"""A shard: what one process runs today (readers, frame buffers, windows, the engine with cross-stream
batching, alert machines) for the cameras the coordinator gives it, plus what cluster mode adds:

- each camera runs under an epoch; every write for it (alerts, calibration, checkpoints) is fenced by it;
- each camera's memory items, frame index and open episode are checkpointed every `checkpoint_s` and with
  every alert open and close (in the alert's transaction), so another shard continues where this one stopped;
- scores and alerts go to the Redis bus with the camera's epoch instead of an in-process hub.

Plain Python (tests drive it directly); service/cluster/actors.py wraps it in a Ray actor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from model.device import pick_device
from service.alerts.webhooks import outbox_writer
from service.alerts.writer import AlertWriter
from service.capture.sources import Reader
from service.cluster.bus import RedisPublisher
from service.cluster.store import Checkpoint, PostgresStore, StaleEpoch
from service.core.messages import Masked, Published
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.pipeline.calibration import CalibrationBusy
from service.pipeline.engine import Engine, Lane, Owner, Scored
from service.pipeline.host import HostedModel, ModelHost
from service.pipeline.streams import Stream, StreamManager, stream_topic

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Camera:
    """One camera on this shard: its epoch, the frame index it continues from, the checkpoint it resumed."""

    id: str
    epoch: int
    offset: int = 0  # added to the reader's frame count: a moved camera keeps numbering where it stopped
    frame: int = -1  # last frame scored here
    resumed: Checkpoint | None = None
    saved_at: float = field(default_factory=time.monotonic)
    stream: Stream | None = None
    first_score: float | None = None  # wall clock of the first frame scored here (failover measurements)
    moved: tuple[str, float] | None = None  # (reason, since): why it came here, and since when it was not scored
    told: str | None = None  # the calibration state last written for API nodes (JSON)


class CameraOwner:
    """Between the engine and the Stream: numbers frames on from the checkpoint, checkpoints every few seconds,
    and turns a refused (stale) write into releasing the camera instead of failing the whole batch."""

    def __init__(self, shard: ShardCore, camera: Camera, stream: Owner) -> None:
        self.shard, self.camera, self.stream = shard, camera, stream

    def on_scored(self, scored: Scored) -> Published:
        camera = self.camera
        scored.frame.index += camera.offset
        camera.frame = scored.frame.index
        if camera.first_score is None:
            camera.first_score = time.time()
            if camera.moved is not None:
                reason, since = camera.moved
                self.shard.moves.labels(reason).inc()
                self.shard.resume_seconds.labels(reason).observe(max(0.0, camera.first_score - since))
        messages = self.stream.on_scored(scored)
        if time.monotonic() - camera.saved_at >= self.shard.settings.checkpoint_s:
            # taken here (the state after this frame), stored by the alert writer in order with the alert writes
            self.shard.writer.submit([partial(self.shard.fenced_checkpoint, self.shard.snapshot(camera))])
            camera.saved_at = time.monotonic()
        return messages


class ShardStore:
    """The store a shard's Streams write through (on the alert writer's thread): every write for a camera under
    its epoch, alert open and close together with the camera's checkpoint; a refused write releases the camera
    and raises, so the writer publishes nothing of it. Reads go straight to PostgreSQL."""

    def __init__(self, shard: ShardCore) -> None:
        self.shard = shard
        self.pg = shard.store
        self._alert_stream: dict[int, str] = {}

    def _epoch(self, stream_id: str) -> int:
        camera = self.shard.cameras.get(stream_id)
        if camera is None:
            raise StaleEpoch(stream_id, -1, None)
        return camera.epoch

    def _fenced(self, stream_id: str, what: str, sql: str, args: tuple) -> list[dict[str, Any]]:
        try:
            return self.pg.fenced(stream_id, self._epoch(stream_id), what, sql, args)
        except StaleEpoch as e:
            self.shard.lost(stream_id, e)
            raise

    def calibration(self, stream_id: str) -> dict[str, Any] | None:
        return self.pg.calibration(stream_id)

    def set_calibration(self, stream_id: str, model: str, calibration: dict, fitted_at: float) -> None:
        self._fenced(stream_id, "set_calibration",
                       "INSERT INTO calibrations VALUES (%s, %s, %s, %s) ON CONFLICT (stream_id) DO UPDATE SET"
                       " model = EXCLUDED.model, calibration = EXCLUDED.calibration, fitted_at = EXCLUDED.fitted_at",
                       (stream_id, model, json.dumps(calibration), fitted_at))  # fmt: skip

    def delete_calibration(self, stream_id: str) -> None:
        self._fenced(stream_id, "delete_calibration",
                       "DELETE FROM calibrations WHERE stream_id = %s", (stream_id,))  # fmt: skip

    def mask(self, stream_id: str) -> list[list[list[float]]]:
        return self.pg.mask(stream_id)

    def reserve_alert_id(self) -> int:
        return self.pg.reserve_alert_id()

    def open_alert(
        self, id: int, stream_id: str, model: str, start_time: float, start_frame: int, peak: float, peak_frame: int
    ) -> None:
        camera = self.shard.cameras.get(stream_id)
        if camera is None:
            raise StaleEpoch(stream_id, -1, None)
        try:
            self.pg.open_alert_fenced(stream_id, camera.epoch, id, model, start_time, start_frame, peak, peak_frame,
                                      self.shard.snapshot(camera))  # fmt: skip
        except StaleEpoch as e:
            self.shard.lost(stream_id, e)
            raise
        camera.saved_at = time.monotonic()
        self._alert_stream[id] = stream_id

    def close_alert(
        self, id: int, end_time: float, end_frame: int, peak: float, peak_frame: int, reason: str | None = None
    ) -> None:
        stream_id = self._alert_stream.pop(id, None) or self._owner(id)
        camera = self.shard.cameras.get(stream_id)
        if camera is None:
            raise StaleEpoch(stream_id, -1, None)
        try:
            self.pg.close_alert_fenced(stream_id, camera.epoch, id, end_time, end_frame, peak, peak_frame,
                                       self.shard.snapshot(camera), reason)  # fmt: skip
        except StaleEpoch as e:
            self.shard.lost(stream_id, e)
            raise
        camera.saved_at = time.monotonic()

    def update_alert_peak(self, id: int, peak: float, peak_frame: int) -> None:
        stream_id = self._owner(id)
        self._fenced(stream_id, "update_alert_peak",
                       "UPDATE alerts SET peak_score = %s, peak_frame = %s WHERE id = %s AND end_time IS NULL",
                       (peak, peak_frame, id))  # fmt: skip

    def set_alert_snapshot(self, id: int, thumbnail: str, heatmap: str | None) -> bool:
        stream_id = self._owner(id)
        rows = self._fenced(stream_id, "set_alert_snapshot",
                              "UPDATE alerts SET thumbnail = %s, heatmap = %s WHERE id = %s RETURNING id",
                              (thumbnail, heatmap, id))  # fmt: skip
        return bool(rows)

    def _owner(self, alert_id: int) -> str:
        stream_id = self._alert_stream.get(alert_id)
        if stream_id is None:
            row = self.pg.alert(alert_id)
            stream_id = row["stream_id"] if row else ""
            self._alert_stream[alert_id] = stream_id
        return stream_id


class ShardEngine(Engine):
    """The engine, with each new lane wrapped in its camera's owner and given the checkpoint's memory
    before its reader starts (StreamManager.start adds the lane, then starts the reader)."""

    def __init__(self, shard: ShardCore, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shard = shard

    def add_lane(
        self, key: str, model: HostedModel, buffer_capacity: int, owner: Owner, calibration=None, max_lag_s=None
    ) -> Lane:
        camera = self.shard.cameras[key.removeprefix("stream:")]
        if isinstance(owner, Stream):
            camera.stream = owner
            if camera.resumed is not None:
                owner.episodes.machine.resume(camera.resumed.episode)
        lane = super().add_lane(
            key, model, buffer_capacity, CameraOwner(self.shard, camera, owner), calibration, max_lag_s
        )
        if camera.resumed is not None:
            lane.items = torch.from_numpy(camera.resumed.items).to(model.device)
        return lane


class ShardStreams(StreamManager):
    def release(self, id: str) -> Stream | None:
        """Stop running a camera without ending it: its open episode, alerts and calibration stay, for the
        shard that runs it next."""
        with self._lock:
            stream = self._streams.pop(id, None)
        if stream is None:
            return None
        if stream.reader is not None:
            stream.reader.stop()
        self.engine.remove_lane(f"stream:{id}")
        self.metrics.forget_stream(id)
        return stream


class ShardLabelled:
    """The shard's metrics as a collector with a `shard` label on every sample: one scrape config sees every shard
    and API node under the single process's metric names."""

    def __init__(self, registry: Any, shard: str) -> None:
        self.registry, self.shard = registry, shard

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for metric in self.registry.collect():
            out = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            for sample in metric.samples:
                out.add_sample(sample.name, {**sample.labels, "shard": self.shard}, sample.value, sample.timestamp,
                               sample.exemplar)  # fmt: skip
            yield out


def items_digest(items: Any) -> str:
    array = items.detach().cpu().numpy() if isinstance(items, torch.Tensor) else items
    return hashlib.sha256(array.astype("float32").tobytes()).hexdigest()


class ShardCore:
    def __init__(self, name: str, settings: Settings, host: ModelHost | None = None) -> None:
        if settings.database_url is None or settings.bus_url is None:
            raise ValueError("a shard needs MNAD_DATABASE_URL and MNAD_BUS_URL")
        self.name, self.settings = name, settings
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.store = PostgresStore(settings.database_url.get_secret_value())
        self.bus = RedisPublisher(settings.bus_url, name)
        self.metrics = Metrics()
        from prometheus_client import Counter, Histogram

        r = self.metrics.registry
        self.moves = Counter("mnad_camera_moves_total", "Cameras this shard took over from another, scoring again",
                             ["reason"], registry=r)  # fmt: skip
        self.resume_seconds = Histogram(
            "mnad_camera_resume_seconds",
            "From a camera's shard lost (or the move, for a drain) to its first score here: the failover time",
            ["reason"], buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60), registry=r,
        )  # fmt: skip
        self.cameras: dict[str, Camera] = {}
        self._lock = threading.RLock()
        self.host = host or ModelHost.load_dir(settings.models_dir, pick_device(settings.device),
                                               settings.default_model, settings.inference)  # fmt: skip
        self.engine = ShardEngine(self, settings.max_batch, settings.max_wait_ms / 1000, self._publish,
                                  self.metrics.observe_batch)  # fmt: skip
        # alert rows, checkpoints and calibrations are stored off the engine thread, alert messages published once
        # stored (a refused write publishes nothing); every alert event goes into the webhook outbox, which the
        # API nodes send from (a shard does not know which of them have URLs)
        self.writer = AlertWriter(self._publish, name=f"writer-{name}",
                                  outbox=outbox_writer(self.store, settings.alert_webhook_max_age_s))  # fmt: skip
        self.streams = ShardStreams(settings, ShardStore(self), self.engine, self.metrics, self.writer, None)  # type: ignore[arg-type]
        self.refused = 0
        self.standby: dict[str, tuple[Reader, float]] = {}  # camera -> reader connected ahead of a move, since
        self.metrics_port: int | None = None
        if settings.shard_metrics_port is not None:
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry(auto_describe=False)
            registry.register(ShardLabelled(self.metrics.registry, name))
            server, _ = start_http_server(settings.shard_metrics_port, settings.host, registry)
            self.metrics_port = server.server_port
        self._stopping = threading.Event()
        self._follower = threading.Thread(target=self._follow_loop, name=f"follow-{name}", daemon=True)
        self.writer.start()
        self.engine.start()
        self._follower.start()

    def _publish(self, messages: Published) -> None:
        self.bus.publish(messages, {c.id: c.epoch for c in list(self.cameras.values())})

    def snapshot(self, camera: Camera) -> Checkpoint:
        """Engine thread: the camera's state after its last scored frame."""
        stream = camera.stream
        assert stream is not None and stream.lane is not None
        items = stream.lane.items.detach().to("cpu", torch.float32).numpy().copy()
        return Checkpoint(camera.id, camera.epoch, camera.frame, items, stream.episodes.machine.state(), time.time())

    def fenced_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Alert writer: store a checkpoint under its epoch; a refused one releases the camera."""
        try:
            self.store.checkpoint(checkpoint)
        except StaleEpoch as e:
            self.lost(checkpoint.stream_id, e)

    def _follow_loop(self) -> None:
        """Every checkpoint_s: what operators asked of this shard's cameras through any API node (PostgreSQL)."""
        while not self._stopping.wait(self.settings.checkpoint_s):
            for camera in list(self.cameras.values()):
                try:
                    self.follow(camera)
                except StaleEpoch as e:
                    self.lost(camera.id, e)
                except Exception:  # the database away for a moment, a bug: the next round tries again
                    log.exception("camera %s: following its requests failed", camera.id)

    def follow(self, camera: Camera) -> None:
        """A changed mask applies from the next batch (told on the camera's socket); a calibration asked for
        starts collecting, or a reset is done; the calibration's state, when it changed, is written for the
        API nodes (their GET .../calibration)."""
        stream = camera.stream
        if stream is None:
            return
        polygons = self.store.mask(camera.id)
        if json.dumps(polygons) != json.dumps(stream.mask):
            stream.use_mask(polygons)  # checked by the API node before it stored them
            log.info("camera %s: mask of %d polygons now", camera.id, len(polygons))
            self._publish([(stream_topic(camera.id), Masked(stream=camera.id, **stream.describe_mask()))])
        if stream.calibration is None:
            return
        request = self.store.take_request(camera.id, camera.epoch)
        if request is not None and request["kind"] == "calibrate":
            with contextlib.suppress(CalibrationBusy):  # asked twice before the first was taken: the first goes on
                stream.start_calibration(request["seconds"])
        elif request is not None:
            stream.reset_calibration()
        state = json.dumps(stream.calibration_state())
        if state != camera.told:
            self.store.set_calibration_state(camera.id, camera.epoch, json.loads(state))
            camera.told = state

    def prepare(self, stream_id: str, timeout: float) -> bool:
        """Connect to a camera that is about to move here, while its shard still runs it (make before break):
        its frames are read and dropped until `run` takes the reader over, so the move costs no reconnect.
        Whether the reader went live within `timeout`. Writes nothing: the camera is not ours yet."""
        row = self.store.stream(stream_id)
        if row is None:
            return False
        with self._lock:
            self._expire_standby()
            if stream_id in self.cameras or stream_id in self.standby:
                return stream_id in self.cameras or self.standby[stream_id][0].state == "live"
            model = self.host.get(row["model"])
            fps = min(model.fps, row["fps_cap"]) if row["fps_cap"] else model.fps
            reader = self.streams.reader(stream_id, row["url"], model, fps, None, None)
            self.standby[stream_id] = (reader, time.monotonic())
            reader.start()
        deadline = time.monotonic() + timeout
        while reader.state != "live" and time.monotonic() < deadline:
            time.sleep(0.02)
        return reader.state == "live"

    def _expire_standby(self, older_than_s: float = 60.0) -> None:
        """Stop standby readers no move claimed (the drain failed or went elsewhere)."""
        for stream_id, (reader, since) in list(self.standby.items()):
            if time.monotonic() - since > older_than_s:
                reader.stop()
                del self.standby[stream_id]

    def run(self, stream_id: str, epoch: int, moved: tuple[str, float] | None = None) -> bool:
        """Start (or keep) running a camera under `epoch`, from its last checkpoint. False if it is gone.
        `moved`: (reason, since when it was not scored) when it comes from another shard, for the metrics."""
        with self._lock:
            camera = self.cameras.get(stream_id)
            if camera is not None:
                camera.epoch = max(camera.epoch, epoch)
                return True
            row = self.store.stream(stream_id)
            if row is None:
                return False
            resumed = self.store.load_checkpoint(stream_id)
            camera = Camera(stream_id, epoch, resumed=resumed, moved=moved)
            if resumed is not None:
                camera.offset, camera.frame = resumed.frame + 1, resumed.frame
                self.store.log_restore(stream_id, epoch, self.name, resumed.frame, items_digest(resumed.items),
                                       (resumed.episode or {}).get("id"))  # fmt: skip
            self.cameras[stream_id] = camera
            standby = self.standby.pop(stream_id, (None, 0.0))[0]
            try:
                self.streams.start(row["url"], row["name"], self.host.get(row["model"]), row["fps_cap"],
                                   row["alerts"], id=stream_id, persist=False, standby=standby)  # fmt: skip
            except Exception:
                self.cameras.pop(stream_id, None)
                if standby is not None:
                    standby.stop()
                raise
            log.info("shard %s runs %s under epoch %d from frame %d", self.name, stream_id, epoch, camera.offset)
            return True

    def release(self, stream_id: str, checkpoint: bool = False) -> None:
        """Stop a camera here (it moved, or was deleted); with `checkpoint`, save its state first (handover)."""
        with self._lock:
            camera = self.cameras.get(stream_id)
            if camera is None:
                return
            stream = self.streams.release(stream_id)
            if checkpoint and stream is not None and stream.lane is not None and camera.frame >= 0:
                self.writer.submit([partial(self.fenced_checkpoint, self.snapshot(camera))])
                self.writer.flush()
            self.cameras.pop(stream_id, None)

    def lost(self, stream_id: str, error: StaleEpoch) -> None:
        """A write was refused: the camera runs elsewhere now. Stop it here, off the engine thread."""
        self.refused += 1
        log.warning("shard %s: %s; releasing the camera", self.name, error)
        camera = self.cameras.get(stream_id)
        if camera is not None and camera.epoch == error.epoch:
            threading.Thread(target=self.release, args=(stream_id,), daemon=True).start()

    def status(self) -> dict[str, Any]:
        return {
            "shard": self.name,
            "pid": os.getpid(),
            "metrics_port": self.metrics_port,
            "cameras": {c.id: {"epoch": c.epoch, "frame": c.frame, "first_score": c.first_score}
                        for c in list(self.cameras.values())},
            "refused": self.refused,
            "engine_errors": self.engine.errors,
        }  # fmt: skip

    def handover(self) -> int:
        """Clean stop (SIGTERM): checkpoint every camera and release it, so the next shard loses no state."""
        ids = list(self.cameras)
        for stream_id in ids:
            self.release(stream_id, checkpoint=True)
        return len(ids)

    def stop(self) -> None:
        self._stopping.set()
        self._follower.join(timeout=10)
        for reader, _ in self.standby.values():
            reader.stop()
        for stream_id in list(self.cameras):
            self.release(stream_id)
        self.engine.stop()
        self.writer.stop()
        self.bus.close()
        self.store.close()
