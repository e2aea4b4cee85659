"""A stream's own calibration: the score normalizer fitted on the stream's normal footage.

A checkpoint's `Calibration` comes from the training camera's held-out clips. On a camera whose
normal footage differs a little (the shipped Ped2 model: calibration PSNR 44.1±0.6 dB, another
camera's normal frames 39-43 dB) every normal frame scores near 1 and alerts never stop. The
operator states that the stream's next N frames are normal; their raw (PSNR, distance) are kept
and `Calibration.fit` gives the stream its own normalizer and alert thresholds. `calibrate` does
the same offline for a whole checkpoint (model/calibrate.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from model.calibration import MIN_FRAMES, Calibration
from service.core.exceptions import Conflict

State = Literal["model", "collecting", "fitted"]


class CalibrationBusy(Conflict):
    """A collection is already running on this stream."""


@dataclass
class StreamCalibration:
    """The checkpoint's calibration, or one fitted on the stream; and the collection in progress, if any.

    Not thread-safe on its own: the stream serializes the engine thread (`add`) and the API (`start`, `reset`).
    """

    model: Calibration  # the checkpoint's
    fitted: Calibration | None = None
    fitted_at: float | None = None  # unix time of the fit
    target: int = 0  # frames to collect; 0: not collecting
    count: int = 0  # frames collected so far
    first_frame: int | None = None  # stream frame indices of the frames collected (or fitted on)
    last_frame: int | None = None
    _psnr: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    _distance: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def state(self) -> State:
        return "collecting" if self.target else "fitted" if self.fitted is not None else "model"

    @property
    def current(self) -> Calibration:
        """The calibration that scores the stream now (a collection keeps the previous one until it fits)."""
        return self.fitted if self.fitted is not None else self.model

    def start(self, frames: int) -> int:
        """Collect the next `frames` scored frames (at least MIN_FRAMES); returns the target."""
        if self.target:
            raise CalibrationBusy(f"a calibration is already collecting ({self.count}/{self.target} frames)")
        self.target, self.count = max(int(frames), MIN_FRAMES), 0
        self.first_frame = self.last_frame = None
        self._psnr, self._distance = np.empty(self.target), np.empty(self.target)
        return self.target

    def add(self, frame: int, psnr: float, distance: float) -> Calibration | None:
        """One scored frame; the fitted calibration once the target is reached, else None."""
        if not self.target:
            return None
        self._psnr[self.count], self._distance[self.count] = psnr, distance
        self.count += 1
        self.first_frame = frame if self.first_frame is None else self.first_frame
        self.last_frame = frame
        if self.count < self.target:
            return None
        model = self.model
        self.fitted = Calibration.fit(self._psnr, self._distance, model.weight, model.regions, model.drift)
        self.fitted_at, self.target = time.time(), 0
        self._psnr, self._distance = np.empty(0), np.empty(0)
        return self.fitted

    def restore(self, fitted: Calibration, fitted_at: float) -> None:
        """A fit stored before a restart."""
        self.fitted, self.fitted_at, self.count = fitted, fitted_at, fitted.frames

    def reset(self) -> None:
        """Back to the checkpoint's calibration; a collection in progress is dropped."""
        self.fitted = self.fitted_at = self.first_frame = self.last_frame = None
        self.target = self.count = 0
        self._psnr, self._distance = np.empty(0), np.empty(0)

    def describe(self) -> dict[str, Any]:
        state = self.state
        target = self.target if state == "collecting" else self.current.frames if state == "fitted" else 0
        progress = self.count / self.target if state == "collecting" else 1.0 if state == "fitted" else 0.0
        return {
            "state": state, "progress": progress, "frames": self.count if state != "model" else 0,
            "target_frames": target, "first_frame": self.first_frame, "last_frame": self.last_frame,
            "calibration": self.current.to_dict(), "fitted_at": self.fitted_at,
        }  # fmt: skip
