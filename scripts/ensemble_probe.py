"""Two checkpoints of one training command, their streaming scores averaged: does an ensemble rank better?

A validation-only probe (held-out normal clips and their synthetic events, never test footage). Seeds alone move
a command's pooled validation AUC over several points and favour different kinds (one seed's memory sees blur
better, another's prediction a rush), which is what averaging members' scores cancels. Each member keeps the
setting its own `calibrate --select` chose (windows, λ, drift, normalizer); the ensemble sends, per frame, the
mean of the members' scores, and its alert thresholds are the default level's quantiles of that mean on the fit
frames (the held-out clips and their busier days; each busier day's calm check cross-fitted, the members'
normalizers refitted without it too), as `validation.choose` does for one checkpoint. Rule: runs/ensemble/SHIP-RULE.txt.

    python scripts/ensemble_probe.py SELECTED_A SELECTED_B HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import probe_lines
import torch
from sklearn.metrics import roc_auc_score

from model import checkpoint, events, synthetic, validation
from model.alerts import AlertPolicy
from model.calibration import AlertLevel, Calibration
from model.data import load_clip
from model.scoring import UPDATE_THRESHOLD

# per stream: (P, D) under a member's windows
Measures = list[tuple[np.ndarray, np.ndarray]]
# busier day left out of the fit (None: none) -> (the fit frames' scores, each validation stream's scores)
Sender = Callable[[int | None], tuple[np.ndarray, list[np.ndarray]]]


class Member:
    """One checkpoint with its selected calibration, scored once on the held-out clips and validation streams."""

    def __init__(self, path: Path, clips: list, fakes: Sequence[synthetic.SyntheticClip]) -> None:
        ck = checkpoint.load(path)
        if ck.calibration is None:
            raise SystemExit(f"{path}: no calibration (give the output of calibrate --select)")
        self.name, self.calibration = path.name, ck.calibration
        cal, net, threshold = ck.calibration, ck.build(), UPDATE_THRESHOLD[ck.config.variant]
        sides = {"error_windows": (cal.error_window,), "distance_windows": (cal.distance_window,)}
        with torch.inference_mode():
            normal = validation.score_candidates(net, clips, threshold, **sides)
            anomalous = validation.score_candidates(
                net, [f.as_clip() for f in fakes], threshold, progress=True, **sides
            )
        self.normal: Measures = [cal.measures(s) for s in normal]
        self.anomalous: Measures = [cal.measures(s) for s in anomalous]

    def sender(self, busy: Sequence[int]) -> Sender:
        """What this member sends: under its stored calibration, or refitted without one busier day."""

        def send(without: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
            fit_on = self.normal + [self.anomalous[k] for k in busy if k != without]
            cal = self.calibration
            if without is not None:
                psnr, distance = (np.concatenate([m[i] for m in fit_on]) for i in (0, 1))
                lengths = [len(p) for p, _ in fit_on]
                cal = Calibration.fit(psnr, distance, cal.weight, cal.regions, cal.drift, lengths)
            fit = np.concatenate([cal.stream_scores(p, d) for p, d in fit_on])
            return fit, [cal.stream_scores(p, d) for p, d in self.anomalous]

        return send


def mean_of(senders: Sequence[Sender]) -> Sender:
    """The ensemble: per frame, the mean of the members' scores."""

    def send(without: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
        sent = [s(without) for s in senders]
        fit = np.mean([f for f, _ in sent], axis=0)
        return fit, [np.mean(streams, axis=0) for streams in zip(*(a for _, a in sent), strict=True)]

    return send


def judge(
    name: str,
    send: Sender,
    fakes: Sequence[synthetic.SyntheticClip],
    labels: Sequence[np.ndarray],
    benign: Sequence[str | None],
    busy: Sequence[int],
    fps: float,
) -> dict:
    """Validation's figures for what `send` sends: pooled AUC, AUC per kind, the worst benign kind's share above
    alert_on (busier days cross-fitted), events caught and false episodes at the default level."""
    level = AlertLevel()
    fit, scores = send(None)
    on, off = np.quantile(fit, [level.on, level.off])
    above: dict[str, list[int]] = {}
    for k, kind in enumerate(benign):
        if kind is None:
            continue
        stream_on = on
        if k in busy:  # thresholds fitted without this busier day
            stream_on = np.quantile(send(k)[0], level.on)
        hits = above.setdefault(kind, [0, 0])
        hits[0] += int(np.sum(scores[k] >= stream_on))
        hits[1] += len(scores[k])
    shares = {kind: a / n for kind, (a, n) in above.items()}
    dummy = [(s, s) for s in scores]  # per_kind's term columns are not used here
    kinds, _ = validation.per_kind(fakes, labels, scores, dummy)
    report = events.evaluate_events(labels, scores, AlertPolicy(float(on), float(off)), fps)
    out = {
        "name": name,
        "auc": float(roc_auc_score(np.concatenate(labels), np.concatenate(scores))),
        "kinds": kinds,
        "benign_above_on": shares,
        "events": f"{report.detected} / {report.events}",
        "false_episodes": report.false_episodes,
        "alert_on": float(on),
    }
    worst = max(shares.values(), default=0.0)
    print(
        f"{name}: validation AUC {100 * out['auc']:.2f} %; fused AUC per kind: "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in kinds.items())
        + f"; worst benign kind above alert_on {100 * worst:.1f} %; events {out['events']}, "
        f"{report.false_episodes} false episodes; alert_on {on:.4f}",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", type=Path, nargs=2, help="checkpoints written by calibrate --select")
    parser.add_argument("clips", type=Path, nargs="+", help="held-out normal clips (frame folders or videos)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()
    first = checkpoint.load(args.members[0])
    config, fps = first.config, first.fps
    if any(checkpoint.load(p).config.window != config.window for p in args.members[1:]):
        raise SystemExit("members must take windows of the same length")
    clips = [load_clip(c, config, fps) for c in args.clips]
    fakes, labels, benign, busy_flags = probe_lines.streams(
        clips, config.window, range(args.seed, args.seed + args.draws)
    )
    busy = [k for k, b in enumerate(busy_flags) if b]
    members = [Member(p, clips, fakes) for p in args.members]
    for m in members:
        judge(m.name, m.sender(busy), fakes, labels, benign, busy, fps)
    judge("ensemble (mean)", mean_of([m.sender(busy) for m in members]), fakes, labels, benign, busy, fps)


if __name__ == "__main__":
    main()
