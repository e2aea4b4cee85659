"""Normalization, fusion and alert thresholds (paper, Sec. 3.4): from PSNR and distance to one score.

Both measures are normalized into [0, 1] and fused, S = λ·(1 − P̂) + (1 − λ)·D̂, in one of two ways:
- `paper_scores`: per-clip min-max over the whole clip (Eq. 13), the benchmark protocol; it
  needs the whole clip first, so it cannot run live.
- `Calibration`: a causal normalizer fixed at the end of training from normal frames the
  model never trained on, so a live camera's score means the same on frame 1 as on frame 10^6.
  Its alert thresholds are quantiles of the fused score on those frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from model import regions
from model.network import Variant

if TYPE_CHECKING:
    from model.scoring import ClipScores

# The paper's fusion weight λ per variant.
FUSION_WEIGHT: dict[Variant, float] = {"prediction": 0.6, "reconstruction": 0.7}
MIN_FRAMES = 20  # a calibration fitted on fewer frames has no usable mean, spread or 99th percentile


def minmax(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def fuse(psnr_norm: np.ndarray, distance_norm: np.ndarray, weight: float) -> np.ndarray:
    """S = λ·(1 − P̂) + (1 − λ)·D̂: higher is more anomalous."""
    return weight * (1 - psnr_norm) + (1 - weight) * distance_norm


def paper_scores(psnr_values: np.ndarray, distance: np.ndarray, weight: float) -> np.ndarray:
    """The paper's per-clip min-max normalization, fused (Eq. 13). Inputs are one whole clip."""
    return fuse(minmax(psnr_values), minmax(distance), weight)


def _logistic(z: np.ndarray | float) -> np.ndarray | float:
    return 1 / (1 + np.exp(-np.clip(z, -60, 60)))


@dataclass(frozen=True)
class Calibration:
    """Causal normalizer: P̂ and D̂ are logistic functions of z-scores against held-out normal frames.

    The logistic keeps every value in (0, 1) without clipping, so no two frames tie however
    far outside the normal range they fall. Alert thresholds are quantiles of the fused
    score on the same held-out frames.
    """

    psnr_mean: float
    psnr_std: float
    distance_mean: float
    distance_std: float
    weight: float  # λ
    alert_on: float  # 99th percentile of held-out normal scores
    alert_off: float  # 95th percentile
    frames: int  # held-out frames it was fitted on
    # which measures P and D are (model.regions): 0 = whole frame, as in the paper; checkpoints older
    # than the region scores have none and keep the whole-frame measures
    error_window: int = 0
    distance_window: int = 0
    distance_relative: bool = False

    @property
    def regions(self) -> regions.Regions:
        return regions.Regions(self.error_window, self.distance_window, self.distance_relative)

    def measures(self, scored: ClipScores) -> tuple[np.ndarray, np.ndarray]:
        """This calibration's (P, D) of a clip scored with its windows (one column each)."""
        return scored.measures(0, 0, self.distance_relative)

    def normalize_psnr(self, values: np.ndarray | float) -> np.ndarray | float:
        return _logistic((np.asarray(values, dtype=np.float64) - self.psnr_mean) / self.psnr_std)

    def normalize_distance(self, values: np.ndarray | float) -> np.ndarray | float:
        return _logistic((np.asarray(values, dtype=np.float64) - self.distance_mean) / self.distance_std)

    def score(self, psnr_values: np.ndarray | float, distance: np.ndarray | float) -> np.ndarray | float:
        return fuse(self.normalize_psnr(psnr_values), self.normalize_distance(distance), self.weight)

    def distance_dominates(self, psnr_values: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Per frame: whether the memory term adds more to the score than the prediction error does
        (then the distance's window, not the error's, is where the frame looks anomalous)."""
        error_term = self.weight * (1 - self.normalize_psnr(psnr_values))
        return np.asarray((1 - self.weight) * self.normalize_distance(distance) > error_term)

    @classmethod
    def fit(
        cls, psnr_values: np.ndarray, distance: np.ndarray, weight: float, where: regions.Regions | None = None
    ) -> Calibration:
        """Fit on normal frames' measures, taken with the windows `where` (default: whole frame)."""
        where = where or regions.Regions()
        if len(psnr_values) < 2:
            raise ValueError("calibration needs at least 2 held-out frames")
        base = cls(
            float(psnr_values.mean()),
            float(max(psnr_values.std(), 1e-6)),
            float(distance.mean()),
            float(max(distance.std(), 1e-9)),
            weight,
            0.0,
            0.0,
            len(psnr_values),
            where.error_window,
            where.distance_window,
            where.distance_relative,
        )
        normal = base.score(psnr_values, distance)
        return cls(
            **{
                **asdict(base),
                "alert_on": float(np.quantile(normal, 0.99)),
                "alert_off": float(np.quantile(normal, 0.95)),
            }
        )

    def to_dict(self) -> dict:
        return asdict(self)
