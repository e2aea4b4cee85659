"""Fusing the two terms otherwise than the service's weighted sum of logistic terms.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The landed
`Calibration` maps each measure's z-score against the held-out frames through a logistic before fusing,
S = λ·(1 − σ(z_P)) + (1 − λ)·σ(z_D), so no two frames tie however far out they fall. The logistic also
saturates: one term far off counts hardly more than both terms a little off, which is how a crowd looks.
This scores the validation streams once and chooses every setting as `train` does (windows, λ, drift, the
calm check, thresholds as quantiles of the normal scores) three times: with the landed fusion, with the
linear one, S = λ·(1 − z_P) + (1 − λ)·z_D, and with a weighted maximum of the logistic terms,
S = max(λ·(1 − σ(z_P)), (1 − λ)·σ(z_D)): each synthetic kind is seen by one term (blur by the distance,
wrong speed by PSNR), and a sum halves whichever term fires.

    python scripts/fusion_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import numpy as np
import probe_lines

from model import validation
from model.calibration import Baselines, Calibration


class LinearCalibration(Calibration):
    """The landed calibration with each term's z-score fused as it is."""

    def normalize_psnr(self, values: np.ndarray | float, baseline: np.ndarray | float | None = None) -> np.ndarray:
        center = self.psnr_mean if baseline is None else baseline
        return (np.asarray(values, dtype=np.float64) - center) / self.psnr_std

    def normalize_distance(self, values: np.ndarray | float, baseline: np.ndarray | float | None = None) -> np.ndarray:
        center = self.distance_mean if baseline is None else baseline
        return (np.asarray(values, dtype=np.float64) - center) / self.distance_std


class MaxCalibration(Calibration):
    """The landed logistic terms fused by a weighted maximum, S = max(λ·(1 − P̂), (1 − λ)·D̂): either term
    may fire alone, and the box the service sends (`distance_dominates`) is the term that set the score."""

    def score(
        self, psnr_values: np.ndarray | float, distance: np.ndarray | float, baselines: Baselines | None = None
    ) -> np.ndarray | float:
        p, d = self.terms(psnr_values, distance, baselines)
        return np.maximum(self.weight * (1 - p), (1 - self.weight) * d)


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    fakes, labels = held.fakes, held.labels
    normal, anomalous = probe_lines.scored(held)
    for name, kind in (
        ("logistic (landed)", validation.Calibration),
        ("linear", LinearCalibration),
        ("weighted max", MaxCalibration),
    ):
        table = probe_lines.choose_patched(held, normal, anomalous, Calibration=kind)  # what validation's streams fit
        print(probe_lines.chosen(name, table, anomalous, fakes, labels), flush=True)


if __name__ == "__main__":
    main()
