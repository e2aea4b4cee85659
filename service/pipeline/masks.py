"""A stream's mask: the parts of its picture the score ignores.

A real camera shows things its normal footage cannot teach: a clock burnt into a corner that changes every
second, a road whose traffic is someone else's business, a tree in the wind. Each raises the prediction
error in its own place, and the worst-region score (model.regions) finds that place on every frame. The
operator draws polygons over them; the engine scores each frame on the rest (`score_step`'s `watched`):
the error windows, the memory distance, the test-time update rule and the heatmap all leave them out.

Polygons are in fractions of the frame (x right, y down, 0-1), so one mask fits any resolution the
camera sends and any input size a model scales it to.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from service.core.exceptions import Invalid
from service.pipeline.host import HostedModel

Point = tuple[float, float]  # x, y as fractions of the frame's width and height
Polygon = list[Point]

MIN_WATCHED = 0.1  # share of the frame a mask must leave: the score needs somewhere to look
SUPERSAMPLE = 8  # polygons are drawn at 8x the model's size and averaged down: edges get their true share


class MaskRefused(Invalid):
    template = "the mask leaves {:.1%} of the frame to score; at least {:.0%} must stay watched"


def watched_map(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """(height, width) float32: the share of each pixel outside every polygon (1 watched, 0 masked)."""
    big = np.ones((height * SUPERSAMPLE, width * SUPERSAMPLE), np.uint8)
    scale = np.array([width * SUPERSAMPLE, height * SUPERSAMPLE], np.float64)
    # a fraction f is the edge f * n of the pixel grid, -0.5 from the pixel centres fillPoly counts in (with 4
    # bits of sub-pixel precision); fillPoly also fills the pixels its edges pass through: within 1/8 pixel
    shapes = [np.round((np.asarray(p, np.float64) * scale - 0.5) * 16).astype(np.int32) for p in polygons]
    if shapes:
        cv2.fillPoly(big, shapes, 0, shift=4)
    return cv2.resize(big.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)


def watched_share(polygons: list[Polygon]) -> float:
    """The share of the frame the score looks at under these polygons, refused (MaskRefused) under MIN_WATCHED.

    Measured on a fixed 240 x 320 grid, so a stream reports the same share whatever model scores it."""
    share = float(watched_map(polygons, 240, 320).mean()) if polygons else 1.0
    if share < MIN_WATCHED:
        raise MaskRefused(share, MIN_WATCHED)
    return share


def watched_tensor(polygons: list[Polygon], model: HostedModel) -> torch.Tensor | None:
    """An engine lane's `watched` map for this model's input size, on its device; None for no mask."""
    if not polygons:
        return None
    c = model.config
    return torch.from_numpy(watched_map(polygons, c.height, c.width)).to(model.device)
