"""One inference engine for every stream: windows of streams that share a model run as one batch.

Each lane (a live stream or an uploaded clip) owns a frame buffer, a sliding window and its own
copy of the model's memory, which the test-time update changes frame by frame: streams never
teach each other's memory. A lane contributes at most one window per batch, since its next
frame needs the memory its current frame leaves behind. Each lane also has its own calibration
(the model's, or one fitted on that stream's footage): lanes batched together may normalize
the same numbers differently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from model import regions
from model.calibration import Calibration, RunningMedians
from model.data import window_tensors
from model.scoring import score_step
from service.alerts.heatmap import pixel_errors
from service.capture.buffer import Frame, FrameBuffer
from service.capture.windows import SlidingWindow
from service.core.messages import Published
from service.pipeline.host import HostedModel

log = logging.getLogger(__name__)


Box = tuple[float, float, float, float]  # x, y, width, height as fractions of the frame


@dataclass(slots=True)
class Scored:
    frame: Frame
    psnr: float  # whole frame (the paper's)
    distance: float  # mean over query positions (the paper's)
    score: float
    error: np.ndarray | None = (
        None  # (H, W) per-pixel prediction error (service.alerts.heatmap): where, not just how much
    )
    # the measures the calibration scores (model.regions): the worst windows', each relative to the frame's median
    # window where the calibration says so
    region_psnr: float = 0.0
    region_distance: float = 0.0
    box: Box = (
        0.0,
        0.0,
        1.0,
        1.0,
    )  # the window that set the score: the error's or the distance's, whichever counted more


class Owner(Protocol):
    def on_scored(self, scored: Scored) -> Published:
        """Handle one scored frame (engine thread); return (topic, message) pairs to publish."""
        ...


@dataclass(eq=False)
class Lane:
    key: str
    model: HostedModel
    buffer: FrameBuffer
    owner: Owner
    window: SlidingWindow = field(init=False)
    items: torch.Tensor = field(init=False)  # (M, C) this lane's memory copy
    calibration: Calibration = field(init=False)  # scores this lane's frames: the model's unless replaced
    gaps: int = 0  # window restarts after dropped frames
    # (H, W) on the model's device, the share of each pixel the score may look at (service.pipeline.masks);
    # None: the whole frame. Replaced whole by the API thread; the engine reads it once per batch
    watched: torch.Tensor | None = field(init=False, default=None)
    _medians: RunningMedians | None = field(init=False, default=None)  # this stream's past measures (drift)

    def __post_init__(self) -> None:
        c = self.model.config
        self.window = SlidingWindow(c.window, (c.height, c.width, c.channels))
        self.items = self.model.items.clone()
        self.calibration = self.model.calibration

    def medians(self, frames: int) -> RunningMedians:
        """The stream's past measures for a calibration that follows drift over `frames` (kept across dropped
        frames: drift is about the scene's hour, not the connection)."""
        if self._medians is None or self._medians.psnr.maxlen != frames:
            self._medians = RunningMedians(frames)
        return self._medians


class BatchObserver(Protocol):
    def __call__(self, model: str, size: int, seconds: float) -> None: ...


class Engine:
    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        publish: Callable[[Published], None],
        observe: BatchObserver | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._publish = publish
        self._observe = observe
        self._lanes: dict[str, Lane] = {}
        self._cond = threading.Condition()
        self._stepping = threading.RLock()  # held while a step scores: remove_lane waits for it (re-entrant: a
        # clip's last score removes its own lane from within the step)
        self._wake = False
        self._stop = False
        self._batch_buffers: dict[str, np.ndarray] = {}
        self._everywhere: dict[str, torch.Tensor] = {}  # per model: the all-watched map of an unmasked lane
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.errors = 0

    # lanes -------------------------------------------------------------------------------
    def add_lane(
        self,
        key: str,
        model: HostedModel,
        buffer_capacity: int,
        owner: Owner,
        calibration: Calibration | None = None,
        max_lag_s: float | None = None,
    ) -> Lane:
        """max_lag_s: live sources only (see FrameBuffer); None keeps every frame the capacity allows."""
        lane = Lane(key, model, FrameBuffer(buffer_capacity, on_ready=self.notify, max_lag_s=max_lag_s), owner)
        if calibration is not None:
            lane.calibration = calibration
        with self._cond:
            self._lanes[key] = lane
        return lane

    def remove_lane(self, key: str) -> None:
        """Remove the lane; on return no step scores it any more (one in flight has finished, and later ones
        skip its closed buffer), so its owner gets no further on_scored."""
        with self._cond:
            lane = self._lanes.pop(key, None)
        if lane is not None:
            lane.buffer.close()
            with self._stepping:
                pass

    def notify(self) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify()

    # loop --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _ready(self) -> list[Lane]:
        return [lane for lane in self._lanes.values() if len(lane.buffer)]

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._wake, timeout=0.5)
                if self._stop:
                    return
                self._wake = False
                ready = self._ready()
                # Batch across streams: give the others a moment to deliver their frame too.
                target = min(self.max_batch, len(self._lanes))
                if ready and len(ready) < target and self.max_wait_s > 0:
                    deadline = time.monotonic() + self.max_wait_s
                    while len(ready) < target and not self._stop:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                        ready = self._ready()
                self._wake = False
            if ready:
                try:
                    with self._stepping:
                        self.step(ready)
                except Exception:  # a bad batch must not stop every stream
                    self.errors += 1
                    log.exception("inference step failed")
                if any(len(lane.buffer) for lane in ready):
                    self._wake = True

    def step(self, lanes: list[Lane]) -> None:
        """One frame from each lane: windows that are full are scored, per model, max_batch at a time."""
        groups: dict[str, list[tuple[Lane, Frame, np.ndarray]]] = {}
        for lane in lanes:
            if lane.buffer.closed:  # removed since it was found ready
                continue
            frame = lane.buffer.pop()
            if frame is None:
                continue
            if frame.after_gap:  # a window across dropped frames would see a jump, not motion
                lane.window.reset()
                lane.gaps += 1
            window = lane.window.push(frame.pixels, frame.segment)
            if window is not None:
                groups.setdefault(lane.model.name, []).append((lane, frame, window))
        messages: Published = []
        for entries in groups.values():
            for start in range(0, len(entries), self.max_batch):
                messages += self._score(entries[start : start + self.max_batch])
        if messages:
            self._publish(messages)

    def _score(self, entries: list[tuple[Lane, Frame, np.ndarray]]) -> Published:
        model = entries[0][0].model
        c = model.config
        n = len(entries)
        batch = self._batch_buffers.get(model.name)
        if batch is None:
            batch = np.empty((self.max_batch, c.window, c.height, c.width, c.channels), np.uint8)
            self._batch_buffers[model.name] = batch
        for j, (_, _, window) in enumerate(entries):
            batch[j] = window
        started = time.perf_counter()
        inputs, target = window_tensors(batch[:n], c, model.device)  # (n, T*ch, H, W), (n, ch, H, W)
        items = torch.stack([lane.items for lane, _, _ in entries])
        where = model.calibration.regions  # a stream's own fit keeps its model's windows
        masks = [lane.watched for lane, _, _ in entries]
        watched = None
        if n == 1 and masks[0] is not None:
            watched = masks[0].unsqueeze(0)  # a view: one masked stream costs no copy
        elif any(m is not None for m in masks):
            everywhere = self._everywhere.get(model.name)
            if everywhere is None:
                everywhere = self._everywhere[model.name] = torch.ones((c.height, c.width), device=model.device)
            watched = torch.stack([everywhere if m is None else m for m in masks])  # (n, H, W)
        step = score_step(
            model.inference,
            inputs,
            target,
            items,
            model.update_threshold,
            (where.error_window,),
            (where.distance_window,),
            watched,
        )
        psnr, distance = step.psnr.cpu().numpy(), step.distance.cpu().numpy()
        region_psnr, region_distance = step.region_psnr[:, 0].cpu().numpy(), step.region_distance[:, 0].cpu().numpy()
        if where.distance_relative:
            region_distance = region_distance / np.maximum(step.distance_floor.cpu().numpy(), 1e-12)
        if where.error_relative:
            region_psnr = regions.relative_psnr(region_psnr, step.error_floor[:, 0].cpu().numpy())
        size = np.array([c.width, c.height, c.width, c.height], np.float64)
        error_box = step.error_box[:, 0].cpu().numpy() / size  # (n, 4) fractions of the frame
        distance_box = step.distance_box[:, 0].cpu().numpy() / size
        errors = pixel_errors(step.error)
        elapsed = time.perf_counter() - started
        for j, (lane, _, _) in enumerate(entries):
            lane.items = step.items[j]
        scores = np.empty(n, np.float64)
        boxes = error_box
        rows: dict[Calibration, list[int]] = {}  # usually one calibration for the whole batch
        for j, (lane, _, _) in enumerate(entries):
            rows.setdefault(lane.calibration, []).append(j)
        for calibration, index in rows.items():
            baselines = None
            if calibration.drift_frames:  # each frame against its own stream's past
                past = np.array(
                    [
                        entries[j][0].medians(calibration.drift_frames).push(region_psnr[j], region_distance[j])
                        for j in index
                    ]
                )  # (k, 2)
                baselines = calibration.anchor(past[:, 0], past[:, 1])
            scores[index] = calibration.score(region_psnr[index], region_distance[index], baselines)
            by_distance = calibration.distance_dominates(region_psnr[index], region_distance[index], baselines)
            boxes[index] = np.where(by_distance[:, None], distance_box[index], error_box[index])
        if self._observe is not None:
            self._observe(model.name, n, elapsed)
        messages: Published = []
        for j, (lane, frame, _) in enumerate(entries):
            scored = Scored(
                frame, float(psnr[j]), float(distance[j]), float(scores[j]), errors[j],
                float(region_psnr[j]), float(region_distance[j]), tuple(boxes[j].tolist()),
            )  # fmt: skip
            messages += lane.owner.on_scored(scored)
        return messages
