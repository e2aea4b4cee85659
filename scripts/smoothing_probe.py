"""Smoothing the score a stream sends over its last few frames.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The landed
score is one frame's: a frame the network happens to predict badly alarms as loudly as the first frame of
a cart. Anomalies in a camera's footage last seconds, noise a frame, so a causal trailing mean over a
stream's last k fused scores (fewer at its start) should separate them better, at up to k/2 frames of
delay. This scores the validation streams once and chooses every setting as `train` does (windows, λ,
drift, the calm check, thresholds as quantiles of the smoothed normal scores) for each k, then over all k.

    python scripts/smoothing_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import probe_lines

from model import validation
from model.calibration import AlertLevel, Baselines, Calibration, Drift
from model.regions import Regions

SMOOTHING = (1, 2, 3, 5, 8)  # frames in the trailing mean (runs/smooth/SHIP-RULE.txt); 1 is the landed score


def trailing_mean(scores: np.ndarray, frames: int, lengths: Sequence[int] | None = None) -> np.ndarray:
    """Per score: the mean of it and up to `frames` - 1 before it in its stream (`lengths`, default one)."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.empty_like(scores)
    start = 0
    for length in [len(scores)] if lengths is None else lengths:
        padded = np.concatenate([np.full(frames - 1, np.nan), scores[start : start + length]])  # (frames - 1 + n,)
        windows = np.lib.stride_tricks.sliding_window_view(padded, frames)  # (n, frames)
        out[start : start + length] = np.nanmean(windows, axis=1)
        start += length
    return out


def smoothed(frames: int) -> type[Calibration]:
    """The landed calibration whose streams send the trailing mean of `frames` scores."""

    class Smoothed(Calibration):
        frames_smoothed = frames

        def stream_scores(
            self, psnr_values: np.ndarray, distance: np.ndarray, lengths: Sequence[int] | None = None
        ) -> np.ndarray:
            return trailing_mean(super().stream_scores(psnr_values, distance, lengths), frames, lengths)

        @classmethod
        def fit(
            cls,
            psnr_values: np.ndarray,
            distance: np.ndarray,
            weight: float,
            where: Regions | None = None,
            drift: Drift = Drift(),
            lengths: Sequence[int] | None = None,
            medians: Baselines | None = None,
            level: AlertLevel = AlertLevel(),
        ) -> Calibration:
            base = super().fit(psnr_values, distance, weight, where, drift, lengths, medians, level)
            if medians is None or not drift.frames:
                return base  # its thresholds came from stream_scores: smoothed already
            normal = np.asarray(base.score(psnr_values, distance, base.anchor(*medians)))
            return base.at_level(trailing_mean(normal, frames, lengths), level)

    return Smoothed


def streams_send(self: validation._Streams, calibration: Calibration) -> np.ndarray:
    """`validation._Streams.scores`, per stream through the calibration's smoothing."""
    baselines = None if self.medians is None else calibration.anchor(*self.medians)
    scores = np.asarray(calibration.score(self.psnr, self.distance, baselines))
    return trailing_mean(scores, calibration.frames_smoothed, self.lengths)


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    fakes, labels = held.fakes, held.labels
    normal, anomalous = probe_lines.scored(held)
    tables = []
    for frames in SMOOTHING:  # what validation's streams fit and send
        table = probe_lines.choose_patched(
            held, normal, anomalous, Calibration=smoothed(frames), **{"_Streams.scores": streams_send}
        )
        tables.append((frames, table))
        print(probe_lines.chosen(f"trailing mean of {frames}", table, anomalous, fakes, labels), flush=True)
    frames, best = probe_lines.pick_over(tables)
    print(f"validation picks: trailing mean of {frames} frames, AUC {100 * best.auc:.2f} %", flush=True)


if __name__ == "__main__":
    main()
