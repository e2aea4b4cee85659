"""The worst error window relative to the frame's typical window: a floor the whole frame shares cancels.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The memory
distance is already taken relative to the frame's median (validation chose it: a change that moves every
query cancels). The error window is absolute: compression, sensor noise or another camera's grain raise
every window's error, and the worst window with them. Here the worst window's mean error is divided by
the q-quantile of all the frame's windows of the same side (as PSNR: the q-window's PSNR minus the worst
window's). The median (q 0.5) cancels a floor the whole frame shares; q 0.9 also the walkers of a busier day.

Every setting is chosen as `train` does (windows, λ, drift, the calm check), among the landed options, each
quantile alone, and all of them, on the same pooled draws:

    python scripts/relative_error_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import probe_lines
import torch.nn.functional as F
from torch import Tensor

from model import regions

QUANTILES = (0.5, 0.9)  # the frame's typical window: its median, and the edge of its busiest tenth
CODE = 1000  # a probe window is side + CODE * (1 + index in QUANTILES), so validation's grid carries the variant


def relative_worst(values: Tensor, size: int, q: float) -> regions.Worst:
    """`regions.worst_window` of a (B, h, w) map over the q-quantile of the same windows' means (the same box)."""
    worst = regions.worst_window(values, size)
    h, w = values.shape[-2:]
    kh, kw = min(size, h), min(size, w)
    pooled = F.avg_pool2d(values.unsqueeze(1), (kh, kw), max(1, size // 2)).flatten(1)  # (B, windows)
    return worst._replace(value=worst.value / pooled.quantile(q, dim=1).clamp_min(1e-12))


@contextlib.contextmanager
def relative(shape: tuple[int, int]) -> Iterator[None]:
    """While open, a window side `k + CODE * (1 + i)` of a map of `shape` (the error map) asks for the worst
    `k` window relative to the frame's QUANTILES[i] window."""
    plain = regions.worst_window

    def worst_window(values: Tensor, size: int) -> regions.Worst:
        variant, side = divmod(size, CODE)
        if variant and tuple(values.shape[-2:]) == shape:
            with probe_lines.worst_window_as(plain):
                return relative_worst(values, side, QUANTILES[variant - 1])
        return plain(values, side)

    with probe_lines.worst_window_as(worst_window):
        yield


def error(side: int) -> str:
    """A probe window side in words: the side and what it is relative to."""
    variant, side = divmod(side, CODE)
    return f"{side} (relative to the q {QUANTILES[variant - 1]} window)" if variant else f"{side}"


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    shape = (held.net.config.height, held.net.config.width)
    names = [f"relative to the q {q} window" for q in QUANTILES]
    probe_lines.coded_variants(held, names, CODE, relative(shape), error)


if __name__ == "__main__":
    main()
