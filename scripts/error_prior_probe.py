"""Where the camera usually errs: the error map weighed by the model's typical error at each place.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The worst
window of the raw error map favours places where a normal frame already errs most: near the camera a walker
is large and moves many pixels per frame, far from it a bike is small. Dividing the error map by the
model's mean error at each pixel over the *training* clips (smoothed, normalized to mean 1, floored at
`FLOOR` so an empty lawn cannot amplify sensor noise without bound), raised to α, scores a frame by the
place that errs most *for that place*. The training clips give the prior so the held-out clips that
calibrate and carry the synthetic events stay unseen by it.

Every setting is chosen as `train` does (windows, λ, drift, the calm check), once with the prior among the
options and once without, on the same pooled draws:

    python scripts/error_prior_probe.py CHECKPOINT --data ../shared/datasets/ped2/training --holdout 15 16 --draws 3
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import probe_lines
import torch.nn.functional as F
from torch import Tensor

from model import checkpoint, regions, validation
from model.data import Clip, load_clips, resample, window_tensors
from model.network import MemoryAE
from model.scoring import UPDATE_THRESHOLD, score_step

ALPHAS = (0.0, 0.5, 1.0)  # how strongly the prior weighs: 0 is the raw error map (the landed score)
FLOOR = 0.1  # the prior's floor, as a share of its mean
SMOOTH = 15  # box filter side (model pixels) over the mean error map: a place, not a pixel
CODE = 1000  # a probe window is side + CODE * (index in ALPHAS), so validation's grid carries the variant


def error_prior(model: MemoryAE, clips: list[Clip], stride: int = 2, batch: int = 32) -> Tensor:
    """Mean squared prediction error per pixel over `clips` (every `stride`-th window), smoothed and
    normalized to mean 1: (H, W)."""
    config, total, count = model.config, None, 0
    items = model.items.detach()
    for clip in clips:
        starts = list(range(0, len(clip.frames) - config.window + 1, stride))
        for i in range(0, len(starts), batch):
            x, target = window_tensors(
                np.stack([clip.frames[t : t + config.window] for t in starts[i : i + batch]]), config, "cpu"
            )
            step = score_step(model, x, target, items.expand(len(x), -1, -1).clone(), 0.0)  # 0: no memory update
            error = step.error.mean(dim=1).sum(dim=0)  # (H, W)
            total = error if total is None else total + error
            count += len(x)
    mean = (total / count)[None, None]  # (1, 1, H, W)
    smooth = F.avg_pool2d(mean, SMOOTH, 1, SMOOTH // 2, count_include_pad=False)[0, 0]
    return (smooth / smooth.mean()).clamp_min(FLOOR)


@contextlib.contextmanager
def weighed(prior: Tensor) -> Iterator[None]:
    """While open, a window side `k + CODE * a` asks for the worst `k` window of the error map over prior**ALPHAS[a]."""
    plain = regions.worst_window
    weights = [prior.pow(alpha) for alpha in ALPHAS]

    def worst_window(values: Tensor, size: int) -> regions.Worst:
        variant, side = divmod(size, CODE)
        if variant and values.shape[-2:] == prior.shape:
            values = values / weights[variant]
        return plain(values, side)

    with probe_lines.worst_window_as(worst_window):
        yield


def error(side: int) -> str:
    """A probe window side in words: the side and its prior's α."""
    variant, side = divmod(side, CODE)
    return f"{side} (prior α {ALPHAS[variant]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the training footage (frame folders)")
    parser.add_argument("--holdout", nargs="+", required=True, help="names of the held-out clips in --data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()
    ck = checkpoint.load(args.checkpoint)
    net, window = ck.build(), ck.config.window
    clips = [resample(c, ck.fps) for c in load_clips(args.data, ck.config, ck.fps)]
    held = [c for c in clips if c.name in args.holdout]
    train = [c for c in clips if c.name not in args.holdout]
    if len(held) != len(args.holdout):
        parser.error(f"held-out clips {args.holdout} not all in {args.data}")
    prior = error_prior(net, train)
    print(
        f"prior from {len(train)} training clips: max {prior.max():.2f}, "
        f"{100 * (prior <= FLOOR).float().mean():.1f} % of pixels at the floor",
        flush=True,
    )
    sides = validation.ERROR_WINDOWS
    error_windows = (*sides, *(k + CODE * a for a in range(1, len(ALPHAS)) for k in sides if k))
    drawn = probe_lines.streams(held, window, range(args.seed, args.seed + args.draws))
    fakes, labels, benign, busy = drawn
    with weighed(prior):
        normal, anomalous = probe_lines.scored(
            probe_lines.HeldOut(net, held, *drawn, UPDATE_THRESHOLD[ck.config.variant]), error_windows
        )
    table = validation.choose(
        normal, anomalous, labels, error_windows, benign=benign, busy=busy, drifts=validation.DRIFTS
    )
    for name, allowed in (
        ("without the prior (the landed options)", {0}),
        ("prior α 0.5 alone", {1}),
        ("prior α 1 alone", {2}),
        ("all of them as options", {0, 1, 2}),
    ):
        rows = [r for r in table if r[0].error_window // CODE in allowed]
        extra = probe_lines.calm_psnr(rows, error)
        print(probe_lines.chosen(name, rows, anomalous, fakes, labels, error_windows, error, extra), flush=True)


if __name__ == "__main__":
    main()
