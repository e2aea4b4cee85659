"""The memory distance where the prediction failed: D measured under the worst error window, not wherever.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The fused
score takes P from the worst error window and D from the worst block of query positions, each wherever it
lies. A block of unusual features that the predictor handles fine (a crowd's texture) then raises D though
nothing in the frame is wrong. Here D is the mean distance of the block of k x k query positions that lies
under the error map's worst window of the same place (8k px, on the same grid of windows): the memory's
verdict on the place the prediction failed. Relative D divides it by the frame's median distance, as landed.

Every setting is chosen as `train` does (windows, λ, drift, the calm check), among the landed options,
the co-located blocks alone, and all of them, on the same pooled draws (rule: runs/coloc/SHIP-RULE.txt):

    python scripts/colocated_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import probe_lines
import torch
import torch.nn.functional as F
from torch import Tensor

from model import regions

CODE = 1000  # a probe distance block is side + CODE, so validation's grid carries the variant


def colocated_worst(distance: Tensor, error: Tensor, side: int) -> regions.Worst:
    """(B, h, w) distance map and the (B, h*s, w*s) error map under it (s = regions.QUERY_STRIDE) -> the mean
    distance of the side x side block whose pixels have the largest mean error, with that block's box."""
    batch, h, w = distance.shape
    scale = error.shape[-1] // w
    kh, kw = min(side, h), min(side, w)
    stride = max(1, side // 2)
    blocks = F.avg_pool2d(distance.unsqueeze(1), (kh, kw), stride).flatten(1)  # (B, windows)
    errors = F.avg_pool2d(error.unsqueeze(1), (kh * scale, kw * scale), stride * scale).flatten(1)  # the same grid
    index = errors.argmax(dim=1)
    columns = (w - kw) // stride + 1
    y, x = index // columns * stride, index % columns * stride
    box = torch.cat([torch.stack([x, y], dim=1), torch.tensor([kw, kh], device=distance.device).expand(batch, 2)], 1)
    return regions.Worst(blocks.gather(1, index[:, None])[:, 0], box, blocks.median(dim=1).values)


@contextlib.contextmanager
def colocated(shape: tuple[int, int]) -> Iterator[None]:
    """While open, `regions.worst_window` keeps the last map of `shape` (the error map: `score_step` measures
    it before the distance map), and a distance side `k + CODE` asks for the block under its worst window."""
    plain = regions.worst_window
    error: list[Tensor] = []

    def worst_window(values: Tensor, size: int) -> regions.Worst:
        if tuple(values.shape[-2:]) == shape:
            error[:] = [values]
        elif size > CODE and error:
            return colocated_worst(values, error[0], size - CODE)
        return plain(values, size)

    with probe_lines.worst_window_as(worst_window):
        yield


def distance(side: int) -> str:
    """A probe distance side in words."""
    return f"{side - CODE} (under the worst error window)" if side > CODE else f"{side}"


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    shape = (held.net.config.height, held.net.config.width)
    probe_lines.coded_variants(held, ["under the worst error window"], CODE, colocated(shape), distance, "distance")


if __name__ == "__main__":
    main()
