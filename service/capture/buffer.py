"""Bounded frame buffer between a reader thread and the engine: when inference falls behind,
the oldest frame goes (live video: the newest frame matters most), the drop is counted and the
frame after the hole is marked, so the engine restarts its window there.

"Behind" is measured in time, not only in frames: a frame goes once it has waited `max_lag_s` longer
than the newest one. A camera's connect burst (FFmpeg probes ~3 s of an RTSP stream, then hands
those frames over within milliseconds) arrives all at once and is kept, since the engine drains it in
a fraction of a second; a backlog that keeps growing is cut at the lag budget. `capacity` only caps
memory. Uploaded clips use the blocking mode instead, so every frame is scored."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    index: int  # frames read from this source so far, across reconnects
    segment: int  # bumps on every reconnect or loop: windows never span a discontinuity
    captured: float  # wall clock (time.time()) when read
    pixels: np.ndarray  # (H, W, ch) uint8 in the model's input format
    image: np.ndarray | None = None  # the decoded picture, referenced not copied: what the dashboard shows
    after_gap: bool = False  # frames before this one were dropped: a window must not span the hole


class FrameBuffer:
    def __init__(
        self, capacity: int, on_ready: Callable[[], None] | None = None, max_lag_s: float | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if max_lag_s is not None and max_lag_s <= 0:
            raise ValueError("max_lag_s must be positive")
        self.capacity = capacity
        self.max_lag_s = max_lag_s  # None: only the capacity bounds the backlog
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._on_ready = on_ready  # wakes the engine
        self.dropped = 0
        self.behind_s = 0.0  # at the last drop: how much older than the arriving frame the last dropped one was
        self.closed = False

    def put(self, frame: Frame, block: bool = False, timeout: float | None = None) -> bool:
        """Add a frame. Non-blocking: drop the oldest ones past capacity or the lag budget.
        Blocking: wait for room (False on close/timeout)."""
        with self._cond:
            if block:
                if not self._cond.wait_for(lambda: self.closed or len(self._frames) < self.capacity, timeout):
                    return False
                if self.closed:
                    return False
            else:
                lost = 0
                while self._frames and (len(self._frames) >= self.capacity or self._stale(frame)):
                    self.behind_s = frame.captured - self._frames.popleft().captured
                    lost += 1
                if lost:
                    self.dropped += lost
                    (self._frames[0] if self._frames else frame).after_gap = True
            self._frames.append(frame)
        if self._on_ready is not None:
            self._on_ready()
        return True

    def _stale(self, newest: Frame) -> bool:
        """The oldest waiting frame was captured more than the lag budget before `newest`."""
        return self.max_lag_s is not None and newest.captured - self._frames[0].captured > self.max_lag_s

    def pop(self) -> Frame | None:
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify()
            return frame

    def __len__(self) -> int:
        return len(self._frames)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
