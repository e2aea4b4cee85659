"""A drift normalizer that follows the stream's own spread as well as its median.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The landed
drift (`Calibration.drift`) compares each measure with the median of its stream's last N frames but divides
by the held-out spread σ. The paper's per-clip min-max also rescales each clip by its own range; the causal
form divides by the stream's own spread over the same previous frames (1.4826 × their median absolute
deviation), held within [σ/s, σ·s]: a stream that is noisier throughout (a busier day, a worse camera) then
counts its own noise as normal, and a calm stream's event stands out. s = 1 is the landed drift. This scores
the validation streams once and chooses every setting as `train` does (windows, λ, drift, the calm check,
thresholds as quantiles of the normal scores) for each s, then over all s (runs/scale/SHIP-RULE.txt).

    python scripts/scale_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import probe_lines

from model.calibration import Calibration, _logistic, past_windows

SCALES = (1.0, 1.5, 3.0)  # how far the own spread may move from the held-out one; 1 is the landed drift
MAD_TO_SIGMA = 1.4826  # a normal distribution's σ per median absolute deviation


def previous_centers_and_spreads(values: np.ndarray, frames: int, lengths: Sequence[int] | None = None) -> np.ndarray:
    """Per value: the median and the MAD spread of up to `frames` values before it in its stream, (n, 2);
    NaN while fewer than DRIFT_WARMUP came before (the landed `previous_medians`, with a spread beside it)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full((len(values), 2), np.nan)
    for first, windows in past_windows(values, frames, lengths):  # windows: (n - warmup, frames)
        median = np.nanmedian(windows, axis=1)
        spread = MAD_TO_SIGMA * np.nanmedian(np.abs(windows - median[:, None]), axis=1)
        out[first : first + len(windows)] = np.stack([median, spread], axis=1)
    return out


def scaled(s: float) -> type[Calibration]:
    """The landed calibration whose drift also divides by the stream's own spread, held within [σ/s, σ·s]."""

    class Scaled(Calibration):
        def anchor(self, psnr_past: np.ndarray, distance_past: np.ndarray):
            """(n, 2) past medians and spreads per measure -> ((center, spread), (center, spread))."""

            def hold(past: np.ndarray, mean: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
                past = np.asarray(past, dtype=np.float64)
                median, own = past[..., 0], past[..., 1]
                cap = self.drift_cap * sigma
                center = np.where(np.isnan(median), mean, np.clip(median, mean - cap, mean + cap))
                spread = np.where(np.isnan(own), sigma, np.clip(own, sigma / s, sigma * s))
                return center, spread

            psnr = hold(psnr_past, self.psnr_mean, self.psnr_std)
            return psnr, hold(distance_past, self.distance_mean, self.distance_std)

        def baselines(self, psnr_values: np.ndarray, distance: np.ndarray, lengths: Sequence[int] | None = None):
            if not self.drift_frames:
                return None
            past = (previous_centers_and_spreads(v, self.drift_frames, lengths) for v in (psnr_values, distance))
            return self.anchor(*past)

        def terms(self, psnr_values, distance, baselines=None):
            if baselines is None:
                return super().terms(psnr_values, distance)
            (cp, sp), (cd, sd) = baselines
            p = _logistic((np.asarray(psnr_values, dtype=np.float64) - cp) / sp)
            return p, _logistic((np.asarray(distance, dtype=np.float64) - cd) / sd)

    return Scaled


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    fakes, labels = held.fakes, held.labels
    normal, anomalous = probe_lines.scored(held)
    tables = []
    for s in SCALES:  # s = 1 runs the landed code itself: the probe's baseline is the landed figure
        patches = {} if s == 1.0 else {"Calibration": scaled(s), "previous_medians": previous_centers_and_spreads}
        table = probe_lines.choose_patched(held, normal, anomalous, **patches)
        tables.append((s, table))
        print(probe_lines.chosen(f"own spread within x{s:g}", table, anomalous, fakes, labels), flush=True)
    s, best = probe_lines.pick_over(tables)
    print(f"validation picks: own spread within x{s:g}, AUC {100 * best.auc:.2f} %", flush=True)


if __name__ == "__main__":
    main()
