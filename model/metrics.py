"""Frame- and event-level accuracy on labelled footage: what `evaluate` reports, as library code.

Frame level (paper, Sec. 4.1): AUC and EER of the fused score and of each term alone, in the paper's
per-clip min-max normalization and in the causal calibration the service uses. Event level: the
service's alert machine run over each clip (model.events), with the checkpoint's calibration and
with a two-fold refit on the camera's own normal frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from model import events
from model.alerts import AlertPolicy
from model.calibration import Calibration, fuse, minmax, paper_scores
from model.scoring import ClipScores


def aligned_labels(labels: np.ndarray, lengths: Sequence[int], skip: int) -> np.ndarray:
    """Concatenated per-frame labels -> the labels of scored frames: each clip loses its first `skip`."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size != sum(lengths):
        raise ValueError(f"{labels.size} labels for {sum(lengths)} frames")
    bounds = np.cumsum([0, *lengths])
    return np.concatenate([labels[a + skip : b] for a, b in pairwise(bounds)])


def labels_beside(footage: Path) -> Path | None:
    """The Ped2 layout's labels file (frame_labels_*.npy) in the folder above the frame folders, if any."""
    return next(iter(sorted(footage.parent.glob("frame_labels_*.npy"))), None)


def by_clip(frame_labels: np.ndarray, scored: Sequence[ClipScores]) -> list[np.ndarray]:
    """`aligned_labels`' output cut back into one boolean array per scored clip."""
    bounds = np.cumsum([0, *(len(s.psnr) for s in scored)])
    return [frame_labels[a:b].astype(bool) for a, b in pairwise(bounds)]


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate where false positives and false negatives are equally likely."""
    fpr, tpr, _ = roc_curve(labels, scores)
    gap = (1 - tpr) - fpr  # miss rate minus false-alarm rate: falls from 1 to -1 along the curve
    i = int(np.argmax(gap <= 0))
    t = gap[i - 1] / (gap[i - 1] - gap[i])  # where the segment from point i-1 to i crosses zero
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {"auc": float(roc_auc_score(labels, scores)), "eer": equal_error_rate(labels, scores)}


def streaming(scored: Sequence[ClipScores], calibration: Calibration) -> list[np.ndarray]:
    """What the service sends for each clip: the calibration's fused score of the region measures."""
    return [calibration.clip_scores(s) for s in scored]


def report(scored: list[ClipScores], labels: np.ndarray, calibration: Calibration | None, weight: float) -> dict:
    """AUC/EER of the fused score and of each term alone (the paper's ablation), both normalizations.

    paper: whole-frame PSNR and mean distance, per-clip min-max, the paper's λ (Eq. 13).
    streaming: the calibration's measures (region windows) and λ, what the service sends.
    """
    paper = {
        "fused": np.concatenate([paper_scores(s.psnr, s.distance, weight) for s in scored]),
        "psnr_only": np.concatenate([1 - minmax(s.psnr) for s in scored]),
        "distance_only": np.concatenate([minmax(s.distance) for s in scored]),
    }
    out = {"paper": {k: metrics(labels, v) for k, v in paper.items()}}
    if calibration is not None:
        terms = []  # per clip, (P̂, D̂) as the service normalizes them (with drift, against the clip's own past)
        for s in scored:
            psnr, distance = calibration.measures(s)
            terms.append(calibration.terms(psnr, distance, calibration.baselines(psnr, distance)))
        p_hat, d_hat = np.concatenate([p for p, _ in terms]), np.concatenate([d for _, d in terms])
        streaming_scores = {
            "fused": fuse(p_hat, d_hat, calibration.weight),  # what Calibration.score fuses: the terms once, not twice
            "psnr_only": 1 - p_hat,
            "distance_only": d_hat,
        }
        out["streaming"] = {k: metrics(labels, v) for k, v in streaming_scores.items()}
    return out


def folds(clip_labels: Sequence[np.ndarray]) -> tuple[list[int], list[int]]:
    """The clips with normal frames, alternately in two folds (the camera's 'normal footage' protocol)."""
    with_normal = [i for i, y in enumerate(clip_labels) if (~np.asarray(y, bool)).any()]
    return with_normal[0::2], with_normal[1::2]


def event_report(
    scored: Sequence[ClipScores],
    clip_labels: Sequence[np.ndarray],
    calibration: Calibration,
    fps: float,
    on_frames: int = AlertPolicy.on_frames,
    off_frames: int = AlertPolicy.off_frames,
) -> dict:
    """The alert machine over every clip, with the checkpoint's calibration and with a refit on the camera.

    Refit: one fold's normal frames play the operator's normal footage (`calibrate`, or the live
    calibration), the other fold and the fully anomalous clips are scored; then the folds swap.
    """

    def run(cal: Calibration, index: Sequence[int]) -> dict:
        policy = AlertPolicy(cal.alert_on, cal.alert_off, on_frames, off_frames)
        scores = [cal.clip_scores(scored[i]) for i in index]
        report = events.evaluate_events([clip_labels[i] for i in index], scores, policy, fps).to_dict()
        return {**report, "clips": [scored[i].name for i in index]}

    everything = list(range(len(scored)))
    out: dict = {"checkpoint": run(calibration, everything), "refit": []}
    for fit_on in folds(clip_labels):
        if not fit_on:
            continue
        normal = [(calibration.measures(scored[i]), ~np.asarray(clip_labels[i], bool)) for i in fit_on]
        psnr = np.concatenate([m[0][keep] for m, keep in normal])
        distance = np.concatenate([m[1][keep] for m, keep in normal])
        lengths = [int(keep.sum()) for _, keep in normal]  # each clip's normal frames, as one stream (with drift)
        camera = Calibration.fit(psnr, distance, calibration.weight, calibration.regions, calibration.drift, lengths)
        scored_clips = [i for i in everything if i not in fit_on]
        out["refit"].append(
            {
                "fitted_on": [scored[i].name for i in fit_on],
                "fitted_frames": len(psnr),
                "scored": [scored[i].name for i in scored_clips],
                "camera": run(camera, scored_clips),
                "checkpoint": run(calibration, scored_clips),
            }
        )
    return out
