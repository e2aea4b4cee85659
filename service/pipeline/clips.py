"""Upload jobs: a stored video decoded in the background and scored through the same engine as
live streams (its own lane and memory copy), without dropping frames, with progress as it goes."""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch

from model.calibration import Calibration
from model.data import preprocess
from service.alerts.machine import AlertMachine, AlertPolicy, Episode
from service.alerts.views import ClipMaps
from service.capture.buffer import Frame
from service.capture.video import decode_frame, frames
from service.capture.windows import FpsSampler, keeps_every_frame
from service.core.exceptions import ClipNotFound, FrameNotFound
from service.core.files import TMP_SUFFIX, write_atomic
from service.core.messages import ClipDone, ClipScoreMessage, Published
from service.core.metrics import Metrics
from service.core.store import Store
from service.pipeline.engine import Engine, Scored
from service.pipeline.host import HostedModel
from service.pipeline.streams import StreamScoring

log = logging.getLogger(__name__)
CLIP_ID = re.compile(r"[0-9a-f]{16}")  # what new_path makes

STATES = ("queued", "running", "done", "failed")
INTERRUPTED = "interrupted: the service stopped while this clip was being scored; upload it again"
RESULT_LOST = "the service stopped before this clip's result was stored; upload it again"
LOW_FPS_RATIO = 0.5  # below half the model's rate, motion between frames is beyond what it learned
TRUNCATED_RATIO = 0.95  # fewer frames decoded than this share of what the container announces


def clip_topic(clip_id: str) -> str:
    return f"clip:{clip_id}"


def segment(episode: Episode) -> dict[str, Any]:
    """A closed episode as a summary row (ClipSegment's fields: an upload's episodes have no alert id)."""
    row = episode.as_dict()
    del row["id"]
    return row


@dataclass(eq=False)
class ClipJob:
    id: str
    path: Path
    model: HostedModel
    policy: AlertPolicy
    frames_total: int  # estimate from the container, for progress
    fps: float  # the container's, or assumed (below)
    fps_recorded: bool = True  # False: the container had no frame rate, `fps` is assumed
    status: str = "queued"
    error: str | None = None
    frames_decoded: int = 0
    frames_kept: int = 0  # after sampling to the model's rate
    decode_done: bool = False
    scores: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    machine: AlertMachine = field(init=False)
    finished: threading.Event = field(default_factory=threading.Event)
    _finish_lock: threading.Lock = field(default_factory=threading.Lock)
    on_finish: Any = None  # callback(job) on the engine or reader thread
    maps: ClipMaps | None = None  # per-frame error maps, for the heatmap of any frame
    # scored as a stream (POST /api/clips?stream=): its calibration and mask; None: the model's, the whole frame
    stream: str | None = None
    calibration: Calibration | None = None
    watched: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.machine = AlertMachine(self.policy)
        self.maps = ClipMaps(self.path.parent, self.id)

    @property
    def expected_scores(self) -> int:
        return max(0, self.frames_kept - self.model.config.window + 1)

    @property
    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        total = max(self.frames_total, self.frames_decoded, 1)
        return round(min(0.999, len(self.scores) / max(1, total - self.model.config.window + 1)), 4)

    def on_scored(self, s: Scored) -> Published:
        row = {"frame": s.frame.index, "score": s.score, "psnr": s.psnr, "distance": s.distance, "box": s.box,
               "region_psnr": s.region_psnr, "region_distance": s.region_distance,
               "anomalous": s.score >= self.policy.on}  # fmt: skip
        if s.error is not None and self.maps is not None:
            self.maps.append(s.error)  # before the score is visible: whoever sees the score finds the map
        self.scores.append(row)
        # the machine's times are the video's (seconds from its first frame), so a segment can be found in it
        event = self.machine.update(s.frame.index, s.frame.index / self.fps, s.score)
        if event is not None and event[0] == "close":
            self.segments.append(segment(event[1]))
        messages: Published = [(clip_topic(self.id), ClipScoreMessage(clip=self.id, **row, progress=self.progress))]
        if self.decode_done and len(self.scores) >= self.expected_scores:
            messages += self.finish()
        return messages

    def finish(self, error: str | None = None) -> Published:
        with self._finish_lock:  # the decoder and the engine thread may both get here
            if self.finished.is_set():
                return []
            event = self.machine.flush()
            if event is not None:
                self.segments.append(segment(event[1]))
            self.status, self.error = ("failed", error) if error else ("done", None)
            if self.maps is not None:
                self.maps.close()
            self.finished.set()
        if self.on_finish is not None:
            self.on_finish(self)
        return [(clip_topic(self.id), ClipDone(clip=self.id, **self.describe(scores=False)))]

    def warnings(self) -> list[str]:
        """What makes these scores less trustworthy than the model's usual ones (shown in the summary)."""
        out = []
        model_fps = self.model.fps
        if not self.fps_recorded:
            out.append(f"the video records no frame rate: {self.fps:g} fps assumed (setting clip_fps)")
        elif self.fps is not None and self.fps < LOW_FPS_RATIO * model_fps:
            out.append(
                f"low frame rate: {self.fps:g} fps against the model's {model_fps:g} fps, so objects move"
                " further between frames than in its training footage and normal motion may score high"
            )
        if self.decode_done and self.frames_total > 0 and self.frames_decoded < TRUNCATED_RATIO * self.frames_total:
            out.append(f"truncated: the container announces {self.frames_total} frames but only"
                       f" {self.frames_decoded} could be decoded; the rest of the video is not scored")  # fmt: skip
        return out

    def describe(self, scores: bool = True) -> dict[str, Any]:
        out = {
            "id": self.id, "status": self.status, "error": self.error, "progress": self.progress,
            "model": self.model.name, "stream": self.stream, "fps": self.fps, "frames_decoded": self.frames_decoded,
            "frames_scored": len(self.scores), "summary": {"anomalous_segments": self.segments,
            "threshold_on": self.policy.on, "threshold_off": self.policy.off, "warnings": self.warnings()},
        }  # fmt: skip
        if scores:
            out["scores"] = self.scores
        return out


class ClipManager:
    def __init__(
        self, directory: Path, store: Store, engine: Engine, metrics: Metrics, publish, fallback_fps,
        max_scoring: int = 2,
    ) -> None:  # fmt: skip
        self._directory = directory
        self.store = store
        self.engine = engine
        self.metrics = metrics
        self.publish = publish  # list of (topic, message) -> bus, from any thread
        self.fallback_fps = fallback_fps
        self._jobs: dict[str, ClipJob] = {}
        self.receiving = 0  # uploads being received now (bounded by max_concurrent_uploads)
        self.receiving_bytes = 0  # bytes they have written so far
        # At most `max_scoring` jobs decode and score at once; the rest wait in submission order. A backlog
        # of uploads then costs a row and a file each, not a decoder, a thread and an engine lane each.
        self._max_scoring = max_scoring
        self._scoring = 0
        self._waiting: deque[ClipJob] = deque()
        self._schedule = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def get(self, id: str) -> ClipJob | None:
        """The clip's job if it was submitted in this run (running or finished), else None."""
        return self._jobs.get(id)

    def stored(self, id: str) -> dict[str, Any] | None:
        """A clip known only from disk (its result, with scores) or its database row (failed, e.g. interrupted by
        a restart); None if there is no such clip."""
        result = self.load_result(id)
        if result is None and (row := self.store.clip(id)) is not None:
            result = self.describe_row(row)
        return result

    def result(self, id: str, scores: bool = True) -> dict[str, Any]:
        """What GET /api/clips/{id} answers (scores included or not); ClipNotFound if there is no such clip."""
        job = self._jobs.get(id)
        if job is not None:
            return job.describe(scores=scores)
        result = self.stored(id)
        if result is None:
            raise ClipNotFound(id)
        if not scores:
            result.pop("scores", None)
        return result

    def scored_frame(self, id: str, frame: int) -> tuple[Any, Any]:
        """(picture, error map or None) of a scored frame, decoded again from the stored video;
        ClipNotFound or FrameNotFound."""
        job = self._jobs.get(id)
        if job is not None:
            video, scores = job.path, list(job.scores)
        else:
            row, result = self.store.clip(id), self.load_result(id)
            if row is None:
                raise ClipNotFound(id)
            if result is None:
                raise FrameNotFound(f"clip {id!r} has no scored frames ({row['status']}: {row['error']})")
            video, scores = self._directory / row["filename"], result.get("scores", [])
        frames = [s["frame"] for s in scores]
        k = bisect.bisect_left(frames, frame)
        if k == len(frames) or frames[k] != frame:
            raise FrameNotFound(f"frame {frame} of clip {id!r} has no score (yet)")
        picture = decode_frame(video, frame)
        if picture is None:
            raise FrameNotFound(f"frame {frame} could not be decoded from clip {id!r}")
        return picture, ClipMaps.read(self._directory, id, k)

    def free_bytes(self) -> int:
        """Free space on the clips' file system (0 if it cannot be read)."""
        try:
            return shutil.disk_usage(self._directory).free
        except OSError:
            return 0

    def usage(self) -> int:
        """Bytes stored under the clips folder (videos, error maps, results); uploads being received are
        counted by `receiving_bytes` instead, so they are not counted twice."""
        total = 0
        for p in self._directory.iterdir():
            if not p.name.endswith(".upload"):
                with contextlib.suppress(OSError):  # deleted meanwhile
                    total += p.stat().st_size
        return total

    def recover(self) -> dict[str, int]:
        """At start-up, before any upload: what a crash left behind. Partial uploads and files of no clip are
        removed; clips that were queued or running are marked failed (their files removed, the row kept so
        every route answers for them until retention); a 'done' clip whose result never reached the disk too."""
        known = self.store.clip_ids()
        removed = 0
        for p in list(self._directory.iterdir()):
            if p.name.endswith((".upload", TMP_SUFFIX)) or p.name.split(".", 1)[0] not in known:
                p.unlink(missing_ok=True)
                removed += 1
        failed = 0
        for row in self.store.clips_in(("queued", "running", "done")):
            if row["status"] == "done" and (self._directory / f"{row['id']}.scores.json").is_file():
                continue
            self.store.set_clip_status(row["id"], "failed", RESULT_LOST if row["status"] == "done" else INTERRUPTED)
            for f in self._directory.glob(f"{row['id']}.*"):
                f.unlink(missing_ok=True)
                removed += 1
            failed += 1
        self._count_states()
        return {"files_removed": removed, "clips_failed": failed}

    def describe_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A clip known only from its database row (failed, or done before a restart without its result)."""
        done = row["status"] == "done"
        return {"id": row["id"], "status": row["status"], "error": row["error"], "progress": 1.0 if done else 0.0,
                "model": row["model"], "stream": None, "fps": None, "frames_decoded": 0, "frames_scored": 0,
                "summary": {"anomalous_segments": [], "threshold_on": None, "threshold_off": None, "warnings": []},
                "scores": []}  # fmt: skip

    @contextmanager
    def receiving_upload(self) -> Iterator[Callable[[int], None]]:
        """Count an upload as being received until it ends, and the bytes it writes meanwhile (`wrote(n)`), so
        the concurrency limit and the quota see it before it is a stored clip."""
        written = 0

        def wrote(n: int) -> None:
            nonlocal written
            written += n
            self.receiving_bytes += n

        self.receiving += 1
        try:
            yield wrote
        finally:
            self.receiving -= 1
            self.receiving_bytes -= written

    def new_path(self, suffix: str) -> tuple[str, Path]:
        id = uuid.uuid4().hex[:16]  # CLIP_ID
        return id, self._directory / f"{id}{suffix}"

    def _count_states(self) -> None:
        """From the database: jobs in memory and clips known only by their row (after a restart) alike."""
        counts = self.store.clip_counts()
        for state in STATES:
            self.metrics.upload_jobs.labels(state).set(counts.get(state, 0))

    def submit(self, id: str, path: Path, original: str | None, size: int, model: HostedModel, policy: AlertPolicy,
               fps: float | None, frames_total: int, stream: StreamScoring | None = None) -> ClipJob:  # fmt: skip
        """Queue a stored upload; `stream`: score it as that stream would (its calibration and mask; the caller
        passes its model and policy)."""
        job = ClipJob(id, path, model, policy, frames_total, fps or self.fallback_fps or model.fps, fps is not None)
        if stream is not None:
            job.stream, job.calibration, job.watched = stream.stream, stream.calibration, stream.watched
        job.on_finish = self._finished
        self._jobs[id] = job
        self.store.add_clip(id, path.name, original, size, model.name)
        self._count_states()
        with self._schedule:
            self._waiting.append(job)
        self._start_waiting()
        return job

    def _start_waiting(self) -> None:
        """Start the oldest waiting jobs while fewer than `max_scoring` run."""
        with self._schedule:
            ready = []
            while self._waiting and self._scoring < self._max_scoring:
                ready.append(self._waiting.popleft())
                self._scoring += 1
        for job in ready:
            threading.Thread(target=self._decode, args=(job,), name=f"clip-{job.id}", daemon=True).start()

    def _finished(self, job: ClipJob) -> None:
        self.engine.remove_lane(f"clip:{job.id}")
        try:
            if job.status == "done":  # the result first: a row says done only once its result is on disk
                result = job.describe()
                write_atomic(job.path.with_name(job.id + ".scores.json"), json.dumps(result))
            self.store.set_clip_status(job.id, job.status, job.error)
            self._count_states()
        finally:
            with self._schedule:
                self._scoring -= 1
            self._start_waiting()

    def _decode(self, job: ClipJob) -> None:
        """Decode every frame into the lane's buffer, waiting for room: an upload loses no frame."""
        job.status = "running"
        self.store.set_clip_status(job.id, "running")
        self._count_states()
        error = None
        try:
            lane = self.engine.add_lane(f"clip:{job.id}", job.model, 8, job, job.calibration)
            lane.watched = job.watched
            sampler = FpsSampler(job.model.fps)
            every_frame = keeps_every_frame(job.fps, job.model.fps)  # the rule of live sources
            for image in frames(job.path):
                t = job.frames_decoded / job.fps
                index = job.frames_decoded
                job.frames_decoded += 1
                if not (sampler.keep(t) or every_frame):
                    continue
                frame = Frame(index, 0, time.time(), preprocess(image, job.model.config))
                if not lane.buffer.put(frame, block=True, timeout=60):
                    error = "scoring stalled or the job was cancelled"
                    break
                job.frames_kept += 1
        except cv2.error as e:
            error = f"decoder error after {job.frames_decoded} frames: {e}"
        except Exception as e:  # a bug or a resource running out: this job fails, its slot frees, the queue moves on
            log.exception("clip %s: scoring failed", job.id)
            error = f"internal error after {job.frames_decoded} frames ({type(e).__name__}: {e})"
        job.decode_done = True
        if error or len(job.scores) >= job.expected_scores:
            # nothing left in flight (or failure): finish here; otherwise the engine finishes on the last score
            self.publish(job.finish(error))

    def load_result(self, id: str) -> dict[str, Any] | None:
        """A finished job's result after a restart (jobs in memory are answered directly). An id that `new_path`
        cannot have made names no file: it never reaches the file system (a 300-character id made stat fail)."""
        if not CLIP_ID.fullmatch(id):
            return None
        path = self._directory / f"{id}.scores.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def expire(self, older_than_s: float) -> int:
        """Remove clips (files, rows, jobs) past the retention time; running jobs are left alone."""
        removed = 0
        for row in self.store.clips_older_than(time.time() - older_than_s):
            job = self._jobs.get(row["id"])
            if job is not None and not job.finished.is_set():
                continue
            for f in self._directory.glob(f"{row['id']}*"):
                f.unlink(missing_ok=True)
            self.store.delete_clip(row["id"])
            self._jobs.pop(row["id"], None)
            removed += 1
        if removed:
            self._count_states()
        return removed
