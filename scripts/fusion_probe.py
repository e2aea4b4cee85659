"""Fusing z-scores as they are, or through the logistic the service uses.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The landed
`Calibration` maps each measure's z-score against the held-out frames through a logistic before fusing,
S = λ·(1 − σ(z_P)) + (1 − λ)·σ(z_D), so no two frames tie however far out they fall. The logistic also
saturates: one term far off counts hardly more than both terms a little off, which is how a crowd looks.
This scores the validation streams once and chooses every setting as `train` does (windows, λ, drift, the
calm check, thresholds as quantiles of the normal scores) twice: with the landed fusion and with the linear
one, S = λ·(1 − z_P) + (1 − λ)·z_D.

    python scripts/fusion_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import probe_lines

from model import checkpoint, validation
from model.calibration import Calibration
from model.data import load_clip
from model.scoring import UPDATE_THRESHOLD


class LinearCalibration(Calibration):
    """The landed calibration with each term's z-score fused as it is."""

    def normalize_psnr(self, values: np.ndarray | float, baseline: np.ndarray | float | None = None) -> np.ndarray:
        center = self.psnr_mean if baseline is None else baseline
        return (np.asarray(values, dtype=np.float64) - center) / self.psnr_std

    def normalize_distance(self, values: np.ndarray | float, baseline: np.ndarray | float | None = None) -> np.ndarray:
        center = self.distance_mean if baseline is None else baseline
        return (np.asarray(values, dtype=np.float64) - center) / self.distance_std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("clips", type=Path, nargs="+", help="held-out normal clips (frame folders or videos)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()
    ck = checkpoint.load(args.checkpoint)
    net, window = ck.build(), ck.config.window
    clips = [load_clip(c, ck.config, ck.fps) for c in args.clips]
    fakes, labels, benign, busy = probe_lines.streams(clips, window, range(args.seed, args.seed + args.draws))
    threshold = UPDATE_THRESHOLD[ck.config.variant]
    normal = validation.score_candidates(net, clips, threshold)
    anomalous = validation.score_candidates(net, [f.as_clip() for f in fakes], threshold, progress=True)
    landed = validation.Calibration
    for name, kind in (("logistic (landed)", landed), ("linear", LinearCalibration)):
        validation.Calibration = kind  # what validation's streams fit
        try:
            table = validation.choose(normal, anomalous, labels, benign=benign, busy=busy, drifts=validation.DRIFTS)
        finally:
            validation.Calibration = landed
        print(probe_lines.chosen(name, table, anomalous, fakes, labels), flush=True)


if __name__ == "__main__":
    main()
