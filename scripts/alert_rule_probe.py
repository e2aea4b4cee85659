"""Would another opening rule of the alert machine catch more synthetic events at the same false alarms?

    python scripts/alert_rule_probe.py runs/drift/s1.safetensors /tmp/holdout --draws 3

Validation only (no test label): the checkpoint's own calibration scores the validation streams of the
held-out footage (model/validation.py: synthetic events, benign copies, busier days; `--draws` seeds from
`--seed`). Each rule's thresholds sit at the same percentiles of the normal frames' values (the held-out
clips and their busier days, as `Calibration.fit` does), and the service's machine (open after 3 frames
at or above on, close after 10 below off) runs over:

- ``plain``: the score itself (what the service does);
- ``meanK``: the causal mean of a stream's last K scores (a sustained, moderate rise);
- ``eitherK``: the larger of the two, each in units of its own normal percentile (`--level`).

Prints, per rule and percentile, events caught, median delay, false episodes and normal frames above on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import probe_lines
import typer

from model import checkpoint, synthetic, validation
from model.calibration import Calibration
from model.data import load_clips, resample
from model.inference import build as build_inference
from model.scoring import UPDATE_THRESHOLD


def causal_mean(scores: np.ndarray, frames: int) -> np.ndarray:
    """Mean of each frame's last `frames` scores (fewer at a stream's start)."""
    total = np.cumsum(np.r_[0.0, scores])
    stop = np.arange(1, len(scores) + 1)
    start = np.maximum(0, stop - frames)
    return (total[stop] - total[start]) / (stop - start)


def report(
    name: str, cal: Calibration, labels: list[np.ndarray], streams: list[np.ndarray], normal: np.ndarray, fps: float
) -> None:
    """Thresholds at each of validation's levels of `normal`, the service's machine over `streams`."""
    for point in validation.operating_points(cal, normal, labels, streams, fps):
        print(f"{name:9s} {point.text()}")


def main(
    weights: Path,
    footage: Path,
    draws: int = typer.Option(3, min=1),
    seed: int = 0,
    frames: list[int] = typer.Option([5, 10, 20], help="K of the causal means"),
    level: float = typer.Option(0.99, help="Normal percentile that scales each term of eitherK"),
) -> None:
    ckpt = checkpoint.load(weights)
    cal, config = ckpt.calibration, ckpt.config
    if cal is None:
        raise typer.BadParameter(f"{weights} has no calibration")
    clips = [resample(c, ckpt.fps) for c in load_clips(footage, config, ckpt.fps)]
    model = build_inference("fp32", ckpt.build("cpu"), "cpu")
    fakes, labels, _, _ = probe_lines.streams(clips, config.window, range(seed, seed + draws))
    columns = (cal.error_window,), (cal.distance_window,)
    threshold = UPDATE_THRESHOLD[config.variant]
    normal = validation.score_candidates(model, clips, threshold, "cpu", *columns)
    fake = validation.score_candidates(
        model, [f.as_clip() for f in fakes], threshold, "cpu", *columns, progress=sys.stderr.isatty()
    )
    scores = [np.asarray(cal.stream_scores(*cal.measures(s))) for s in fake]
    quiet = [np.asarray(cal.stream_scores(*cal.measures(s))) for s in normal]
    fit = quiet + [s for s, f in zip(scores, fakes, strict=True) if f.kind in synthetic.BUSY]  # as the fit sees them
    plain = np.concatenate(fit)
    report("plain", cal, labels, scores, plain, ckpt.fps)
    for k in frames:
        means = [causal_mean(s, k) for s in scores]
        normal_means = np.concatenate([causal_mean(s, k) for s in fit])
        report(f"mean{k}", cal, labels, means, normal_means, ckpt.fps)
        unit, unit_mean = np.quantile(plain, level), np.quantile(normal_means, level)
        either = [np.maximum(s / unit, m / unit_mean) for s, m in zip(scores, means, strict=True)]
        report(f"either{k}", cal, labels, either, np.maximum(plain / unit, normal_means / unit_mean), ckpt.fps)


if __name__ == "__main__":
    typer.run(main)
