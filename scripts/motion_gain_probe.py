"""The worst error window relative to the motion it had to predict: a walker the model follows keeps a low share.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). A window's
prediction error grows with what it holds: a walker's contrast, and how many walkers the frame has (the
worst of more windows is higher). The error of copying the last input frame to the next one grows the same
way. Per window, r = mean model error / (mean copy error + eps), and P is r as PSNR (-10·log10 r) of the
window with the largest r: the share of the motion the model did not explain. eps sets where a still window
stops counting; a large eps is today's absolute window (the same ranking).

Every setting is chosen as `train` does (windows, λ, drift, the calm check), among the landed options, each
eps alone, and all of them, on the same pooled draws (rule: runs/gain/SHIP-RULE.txt):

    python scripts/motion_gain_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from unittest import mock

import probe_lines
import torch
import torch.nn.functional as F
from torch import Tensor

from model import regions, scoring

EPSILONS = (1e-3, 3e-3, 1e-2)  # copy error (pixels in [0, 1]) at which a window's share is half its plain ratio
CODE = 1000  # a probe window is side + CODE * (1 + index in EPSILONS), so validation's grid carries the variant


def gain_worst(error: Tensor, copy: Tensor, size: int, eps: float) -> regions.Worst:
    """The window of (B, h, w) `error` with the largest mean error over (mean `copy` + eps), as a Worst; `copy` is
    any (B, h, w) map of what the window had to explain (the copy error here, presence in presence_probe.py)."""
    batch, h, w = error.shape
    kh, kw = min(size, h), min(size, w)
    stride = max(1, size // 2)
    pooled = F.avg_pool2d(torch.stack([error, copy], dim=1), (kh, kw), stride).flatten(2)  # (B, 2, windows)
    share = pooled[:, 0] / (pooled[:, 1] + eps)
    value, index = share.max(dim=1)
    columns = (w - kw) // stride + 1
    y, x = index // columns * stride, index % columns * stride
    box = torch.cat([torch.stack([x, y], dim=1), torch.tensor([kw, kh], device=error.device).expand(batch, 2)], dim=1)
    return regions.Worst(value, box, share.median(dim=1).values)


def copy_error(x: Tensor, target: Tensor) -> Tensor:
    """(B, T*C, H, W) inputs and (B, C, H, W) target -> (B, H, W): the error of copying the last input frame."""
    channels = target.shape[1]
    return scoring.squared_error(x[:, -channels:].float(), target).mean(dim=1)


@contextlib.contextmanager
def gains(
    shape: tuple[int, int],
    denominator: Callable[[Tensor, Tensor], Tensor] = copy_error,
    epsilons: Sequence[float] = EPSILONS,
) -> Iterator[None]:
    """While open, `score_step` keeps each batch's `denominator` map (the copy error unless told), and a window side
    `k + CODE * (1 + i)` of a map of `shape` (the error map) asks for the worst `k` window's share with epsilons[i]."""
    plain_step, plain_window = scoring.score_step, regions.worst_window
    below: list[Tensor] = []

    def score_step(model: object, x: Tensor, target: Tensor, items: Tensor, *args: object, **kwargs: object) -> object:
        below[:] = [denominator(x, target)]  # (B, H, W)
        return plain_step(model, x, target, items, *args, **kwargs)

    def worst_window(values: Tensor, size: int) -> regions.Worst:
        variant, side = divmod(size, CODE)
        if variant and tuple(values.shape[-2:]) == shape:
            return gain_worst(values, below[0], side, epsilons[variant - 1])
        return plain_window(values, side)

    with mock.patch.object(scoring, "score_step", score_step), probe_lines.worst_window_as(worst_window):
        yield


def error(side: int) -> str:
    """A probe window side in words: the side and its eps."""
    variant, side = divmod(side, CODE)
    return f"{side} (share of the copy error, eps {EPSILONS[variant - 1]})" if variant else f"{side}"


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    shape = (held.net.config.height, held.net.config.width)
    probe_lines.coded_variants(held, [f"share with eps {e}" for e in EPSILONS], CODE, gains(shape), error)


if __name__ == "__main__":
    main()
