"""Frames at the model's rate, in windows of past frames + the current one.

The model learned motion per frame at its training frame rate, so a 30 fps camera is sampled
down to (say) 10 fps by source timestamp, not wall clock: the choice is deterministic, and a
file or replay gives the same frames however fast it is read.
"""

from __future__ import annotations

import numpy as np

EVERY_FRAME_RATIO = 1.1  # a source at most this much faster than the model's rate keeps every frame


def keeps_every_frame(source_fps: float | None, model_fps: float) -> bool:
    """Whether a source of this frame rate (None: unknown) is scored frame by frame, unsampled: one no faster than
    the model's rate (give or take timestamp jitter, which must not cost frames). model/data.py's `resample`
    applies the same rule to stored clips."""
    return source_fps is not None and source_fps <= EVERY_FRAME_RATIO * model_fps


class FpsSampler:
    """Keeps frames spaced 1/fps apart in source time; a slower source keeps every frame."""

    def __init__(self, fps: float, tolerance: float = 0.25) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.period = 1.0 / fps
        self.slack = tolerance * self.period  # timestamp jitter that still counts as on time
        self.next_t: float | None = None

    def reset(self) -> None:
        self.next_t = None

    def keep(self, t: float) -> bool:
        if self.next_t is None or t < self.next_t - 2 * self.period:  # first frame, or time went backwards
            self.next_t = t + self.period
            return True
        if t + self.slack < self.next_t:
            return False
        # step on the grid; if the source skipped ahead (gap), resynchronize instead of bursting
        self.next_t = max(self.next_t + self.period, t + self.period - self.slack)
        return True


class SlidingWindow:
    """The last `size` frames, always readable as one contiguous, ordered array without copying.

    Each frame is written twice, at i and i + size, so ring[start : start + size] is ordered.
    """

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        self.size = size
        self._ring = np.zeros((2 * size, *shape), np.uint8)
        self._next = 0  # position of the next write, in [0, size)
        self.count = 0  # frames since the last reset
        self.segment: int | None = None

    def reset(self) -> None:
        self.count = 0

    def push(self, pixels: np.ndarray, segment: int = 0) -> np.ndarray | None:
        """Add a frame; the full window (size, H, W, ch) oldest first once `size` frames of one segment are in."""
        if segment != self.segment:
            self.segment = segment
            self.count = 0
        i = self._next
        self._ring[i] = pixels
        self._ring[i + self.size] = pixels
        self._next = (i + 1) % self.size
        self.count += 1
        if self.count < self.size:
            return None
        return self._ring[self._next : self._next + self.size]
