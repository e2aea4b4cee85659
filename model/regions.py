"""Worst-region measures: an anomaly is local, and a frame-wide mean dilutes it.

One global PSNR mixes the whole frame, so a denser crowd lowers it as much as a small cart does.
Taking the worst square window of the prediction error (and of the per-position memory feature
distance) scores a frame by its most surprising place, whatever the rest of the frame holds.
The window that sets the score is also the box the service sends with it.

Either measure can be taken relative to the same frame's typical value (its median window or query
position): what raises every place at once (a grainier stream, a lower bitrate, another light) cancels,
and what raises one place does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

QUERY_STRIDE = 8  # pixels per query position: the encoder pools three times


@dataclass(frozen=True)
class Regions:
    """Window sides for the two measures; 0 means the whole frame (the paper's measures)."""

    error_window: int = 0  # pixels at the model's input size
    distance_window: int = 0  # query positions (each covers QUERY_STRIDE x QUERY_STRIDE pixels)
    # D relative to the frame's own typical distance (its median over query positions): a change that
    # moves every query (light, weather, another day) cancels out, a local one does not
    distance_relative: bool = False
    # P relative to the frame's median window of the same side: the worst window's PSNR minus the median
    # one's. The same reasoning for the error: compression or sensor noise raise every window's error
    error_relative: bool = False

    def __post_init__(self) -> None:
        if self.error_window < 0 or self.distance_window < 0:
            raise ValueError(f"window sides must be >= 0, not {self}")
        if self.error_relative and not self.error_window:
            raise ValueError("a relative error needs an error window: the whole frame is its own median")


class Worst(NamedTuple):
    value: Tensor  # (B,) mean over the worst window
    box: Tensor  # (B, 4) long: x, y, width, height of that window, in the map's units
    typical: Tensor  # (B,) the median window's mean: the frame's usual place (the whole-frame mean for 0)


def worst_window(values: Tensor, size: int, watched: Tensor | None = None) -> Worst:
    """(B, h, w) map -> its largest mean over size x size windows at stride size/2 (0: the whole map).

    Windows that do not fit in the map shrink to it, so a window larger than the map is the frame mean.
    `watched` (B, h, w) in [0, 1]: the share of each place the score may look at (an operator's mask,
    service.pipeline.masks). A window then averages its watched places only, and counts only when at least
    half of it is watched (if none is, any window with a watched place counts): a sliver of a window at a
    mask's edge would score a few pixels as if they were the whole window.
    """
    batch, h, w = values.shape
    if size <= 0 or (size >= h and size >= w):
        whole = torch.tensor([0, 0, w, h], device=values.device).expand(batch, 4)
        if watched is None:
            mean = values.mean(dim=(1, 2))
        else:
            mean = (values * watched).sum(dim=(1, 2)) / watched.sum(dim=(1, 2)).clamp_min(1e-12)
        return Worst(mean, whole, mean)
    kh, kw = min(size, h), min(size, w)
    stride = max(1, size // 2)
    if watched is None:
        pooled = F.avg_pool2d(values.unsqueeze(1), (kh, kw), stride).flatten(1)  # (B, h' * w')
        value, index = pooled.max(dim=1)
        typical = pooled.median(dim=1).values
    else:
        share = F.avg_pool2d(watched.unsqueeze(1), (kh, kw), stride).flatten(1)  # (B, h' * w') watched share
        counted = share >= 0.5
        counted |= ~counted.any(dim=1, keepdim=True) & (share > 0)
        pooled = F.avg_pool2d((values * watched).unsqueeze(1), (kh, kw), stride).flatten(1) / share.clamp_min(1e-12)
        pooled = pooled.masked_fill(~counted, float("nan"))
        value, index = pooled.nan_to_num(float("-inf")).max(dim=1)
        typical = pooled.nanmedian(dim=1).values
    columns = (w - kw) // stride + 1
    y, x = index // columns * stride, index % columns * stride
    size_t = torch.tensor([kw, kh], device=values.device).expand(batch, 2)
    box = torch.cat([torch.stack([x, y], dim=1), size_t], dim=1)
    return Worst(value, box, typical)


def watched_positions(watched: Tensor) -> Tensor:
    """(B, H, W) watched share of each pixel -> (B, H/8, W/8) of each query position (the encoder's grid)."""
    return F.avg_pool2d(watched.unsqueeze(1), QUERY_STRIDE).squeeze(1)


def relative_psnr(psnr: Tensor | np.ndarray, floor: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """A window's PSNR relative to the frame's median window (both dB): 10·log10(median error / window error)."""
    return psnr - floor


def relative(distance: Tensor, floor: Tensor) -> Tensor:
    """A window's distance over the frame's median distance (both (B,) or broadcastable)."""
    return distance / floor.clamp_min(1e-12)


def position_distance(queries: Tensor, nearest: Tensor, height: int, width: int) -> Tensor:
    """Squared distance of each query to its nearest item, as a map: (B, N, C) x2 -> (B, h, w)."""
    return (queries - nearest).pow(2).mean(dim=-1).unflatten(1, (height // QUERY_STRIDE, width // QUERY_STRIDE))
