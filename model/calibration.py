"""Normalization, fusion and alert thresholds (paper, Sec. 3.4): from PSNR and distance to one score.

Both measures are normalized into [0, 1] and fused, S = λ·(1 − P̂) + (1 − λ)·D̂, in one of two ways:
- `paper_scores`: per-clip min-max over the whole clip (Eq. 13), the benchmark protocol; it
  needs the whole clip first, so it cannot run live.
- `Calibration`: a causal normalizer fixed at the end of training from normal frames the
  model never trained on, so a live camera's score means the same on frame 1 as on frame 10^6.
  Its alert thresholds are quantiles of the fused score on those frames.

A calibration may also follow a stream's slow drift (`Drift`): each measure is then compared with the
median of the stream's own previous frames instead of the held-out mean, so a busier hour or a dimmer
evening is not an anomaly, but that median may move at most `cap` held-out spreads from the mean, so
an anomaly that stays (a cart parked in view) can never become the norm. Validation chooses whether
and how much, as it chooses every other setting (frames 0: the fixed normalizer, the paper's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

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


DRIFT_WARMUP = 10  # previous frames a stream needs before its own median replaces the held-out mean


class Drift(NamedTuple):
    """How far the normalizer follows a stream: the median of its last `frames` measures, held within
    `cap` held-out spreads of the held-out mean. frames 0: it does not (the paper's fixed normalizer)."""

    frames: int = 0
    cap: float = 0.0


class AlertLevel(NamedTuple):
    """Where the alert thresholds sit: quantiles of the held-out normal scores. `on` opens an episode, `off`
    (lower, the hysteresis) closes it. The default is the service's; `validation.ALERT_LEVELS` shows what the
    others would do on the same footage, so an operator can trade missed events for false alarms knowingly."""

    on: float = 0.99
    off: float = 0.95


# per frame: the PSNR and distance a stream's frame is compared with (or their raw previous medians)
Baselines = tuple[np.ndarray, np.ndarray]


def past_windows(
    values: np.ndarray, frames: int, lengths: Sequence[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Per stream (`lengths`, default one) with more than DRIFT_WARMUP values: the index of its first value past
    the warm-up, and for it and every later value the up to `frames` values before it, NaN-padded (a view)."""
    start = 0
    for length in [len(values)] if lengths is None else lengths:
        if length > DRIFT_WARMUP:
            padded = np.concatenate([np.full(frames, np.nan), values[start : start + length - 1]])  # (frames + n - 1,)
            yield start + DRIFT_WARMUP, np.lib.stride_tricks.sliding_window_view(padded, frames)[DRIFT_WARMUP:]
        start += length


def previous_medians(values: np.ndarray, frames: int, lengths: Sequence[int] | None = None) -> np.ndarray:
    """Per value: the median of up to `frames` values before it in its stream, NaN while fewer than
    DRIFT_WARMUP came before. `lengths`: the streams concatenated in `values` (default: one)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), np.nan)
    for first, windows in past_windows(values, frames, lengths):  # windows: (n - warmup, frames)
        out[first : first + len(windows)] = np.nanmedian(windows, axis=1)
    return out


class RunningMedians:
    """`previous_medians` of (PSNR, distance), one frame at a time: the service's form, one per stream."""

    def __init__(self, frames: int) -> None:
        self.psnr: deque[float] = deque(maxlen=max(1, frames))
        self.distance: deque[float] = deque(maxlen=max(1, frames))
        self.seen = 0  # frames pushed

    def push(self, psnr: float, distance: float) -> tuple[float, float]:
        """The medians of the frames before this one (NaN during the warm-up); then this one joins them."""
        medians = (np.nan, np.nan)
        if self.seen >= DRIFT_WARMUP:
            medians = (_median(self.psnr), _median(self.distance))
        self.psnr.append(psnr)
        self.distance.append(distance)
        self.seen += 1
        return medians


def _median(values: deque[float]) -> float:
    return float(np.median(np.fromiter(values, np.float64, len(values))))


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
    alert_on: float  # AlertLevel().on quantile of held-out normal scores
    alert_off: float  # AlertLevel().off quantile
    frames: int  # held-out frames it was fitted on
    # which measures P and D are (model.regions): 0 = whole frame, as in the paper; checkpoints older
    # than the region scores have none and keep the whole-frame measures
    error_window: int = 0
    distance_window: int = 0
    distance_relative: bool = False
    drift_frames: int = 0  # Drift; checkpoints from before have none: the fixed normalizer
    drift_cap: float = 0.0
    error_relative: bool = False  # P relative to the frame's median error window (regions.Regions)

    def __post_init__(self) -> None:
        if self.drift_frames < 0 or self.drift_cap < 0:
            raise ValueError(f"drift frames and cap must not be negative ({self.drift_frames}, {self.drift_cap})")

    @property
    def drift(self) -> Drift:
        return Drift(self.drift_frames, self.drift_cap)

    @property
    def regions(self) -> regions.Regions:
        return regions.Regions(self.error_window, self.distance_window, self.distance_relative, self.error_relative)

    def measures(self, scored: ClipScores, columns: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """This calibration's (P, D) of a clip scored with its windows (`columns`: which of the scored
        error and distance windows they are; one each by default)."""
        return scored.measures(*columns, self.distance_relative, self.error_relative)

    def anchor(self, psnr_medians: np.ndarray | float, distance_medians: np.ndarray | float) -> Baselines:
        """A stream's previous medians (NaN: still warming up) -> what its frames are compared with: the
        held-out mean, or the median held within `drift_cap` spreads of it."""

        def hold(median: np.ndarray | float, mean: float, spread: float) -> np.ndarray:
            median = np.asarray(median, dtype=np.float64)
            cap = self.drift_cap * spread
            return np.where(np.isnan(median), mean, np.clip(median, mean - cap, mean + cap))

        return hold(psnr_medians, self.psnr_mean, self.psnr_std), hold(
            distance_medians, self.distance_mean, self.distance_std
        )

    def baselines(
        self, psnr_values: np.ndarray, distance: np.ndarray, lengths: Sequence[int] | None = None
    ) -> Baselines | None:
        """Per frame of the streams (`lengths`, default one), what it is compared with; None without drift."""
        if not self.drift_frames:
            return None
        frames = self.drift_frames
        return self.anchor(previous_medians(psnr_values, frames, lengths), previous_medians(distance, frames, lengths))

    def normalize_psnr(self, values: np.ndarray | float, baseline: np.ndarray | float | None = None):
        center = self.psnr_mean if baseline is None else baseline
        return _logistic((np.asarray(values, dtype=np.float64) - center) / self.psnr_std)

    def normalize_distance(self, values: np.ndarray | float, baseline: np.ndarray | float | None = None):
        center = self.distance_mean if baseline is None else baseline
        return _logistic((np.asarray(values, dtype=np.float64) - center) / self.distance_std)

    def terms(
        self, psnr_values: np.ndarray | float, distance: np.ndarray | float, baselines: Baselines | None = None
    ) -> tuple[np.ndarray | float, np.ndarray | float]:
        """(P̂, D̂) in (0, 1), against the held-out means or against `baselines`."""
        bp, bd = baselines if baselines is not None else (None, None)
        return self.normalize_psnr(psnr_values, bp), self.normalize_distance(distance, bd)

    def score(
        self, psnr_values: np.ndarray | float, distance: np.ndarray | float, baselines: Baselines | None = None
    ) -> np.ndarray | float:
        return fuse(*self.terms(psnr_values, distance, baselines), self.weight)

    def stream_scores(
        self, psnr_values: np.ndarray, distance: np.ndarray, lengths: Sequence[int] | None = None
    ) -> np.ndarray:
        """The score a stream sends for each of its frames, in order (`lengths`: several streams, concatenated)."""
        return np.asarray(self.score(psnr_values, distance, self.baselines(psnr_values, distance, lengths)))

    def clip_scores(self, scored: ClipScores) -> np.ndarray:
        """What the service sends for one scored clip."""
        return self.stream_scores(*self.measures(scored))

    def distance_dominates(
        self, psnr_values: np.ndarray, distance: np.ndarray, baselines: Baselines | None = None
    ) -> np.ndarray:
        """Per frame: whether the memory term adds more to the score than the prediction error does
        (then the distance's window, not the error's, is where the frame looks anomalous)."""
        p, d = self.terms(psnr_values, distance, baselines)
        return np.asarray((1 - self.weight) * d > self.weight * (1 - p))

    @classmethod
    def fit(
        cls,
        psnr_values: np.ndarray,
        distance: np.ndarray,
        weight: float,
        where: regions.Regions | None = None,
        drift: Drift = Drift(),
        lengths: Sequence[int] | None = None,
        medians: Baselines | None = None,
        level: AlertLevel = AlertLevel(),
    ) -> Calibration:
        """Fit on normal frames' measures, taken with the windows `where` (default: whole frame). The alert
        thresholds are quantiles of the scores the streams would send (`lengths`: the streams, in order,
        concatenated; default one), so with drift each frame is scored against its own stream's past.
        `medians`: those frames' `previous_medians` for the drift, when already computed (validation fits
        many calibrations on the same streams). `level`: which quantiles the thresholds are."""
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
            drift.frames,
            drift.cap,
            where.error_relative,
        )
        if medians is None or not drift.frames:
            normal = base.stream_scores(psnr_values, distance, lengths)
        else:
            normal = np.asarray(base.score(psnr_values, distance, base.anchor(*medians)))
        return base.at_level(normal, level)

    def at_level(self, normal_scores: np.ndarray, level: AlertLevel) -> Calibration:
        """This calibration with its thresholds at `level` of `normal_scores` (the scores its fit frames send)."""
        on, off = np.quantile(normal_scores, [level.on, level.off])
        return replace(self, alert_on=float(on), alert_off=float(off))

    def to_dict(self) -> dict:
        return asdict(self)
