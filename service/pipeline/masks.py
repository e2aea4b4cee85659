"""A stream's mask: the parts of its picture the score ignores.

A real camera shows things its normal footage cannot teach: a clock burnt into a corner that changes every
second, a road whose traffic is someone else's business, a tree in the wind. Each raises the prediction
error in its own place, and the worst-region score (model.regions) finds that place on every frame. The
operator draws polygons over them (model.masks: fractions of the frame, rasterized); the engine scores each
frame on the rest (`score_step`'s `watched`): the error windows, the memory distance, the test-time update
rule and the heatmap all leave them out.
"""

from __future__ import annotations

import torch

from model.masks import MIN_WATCHED, Point, Polygon, watched_fraction, watched_map
from service.core.exceptions import Invalid
from service.pipeline.host import HostedModel

__all__ = ["MIN_WATCHED", "MaskRefused", "Point", "Polygon", "watched_map", "watched_share", "watched_tensor"]


class MaskRefused(Invalid):
    template = "the mask leaves {:.1%} of the frame to score; at least {:.0%} must stay watched"


def watched_share(polygons: list[Polygon]) -> float:
    """The share of the frame the score looks at under these polygons (model.masks.watched_fraction), refused
    (MaskRefused) under MIN_WATCHED."""
    share = watched_fraction(polygons)
    if share < MIN_WATCHED:
        raise MaskRefused(share, MIN_WATCHED)
    return share


def watched_tensor(polygons: list[Polygon], model: HostedModel) -> torch.Tensor | None:
    """An engine lane's `watched` map for this model's input size, on its device; None for no mask."""
    if not polygons:
        return None
    c = model.config
    return torch.from_numpy(watched_map(polygons, c.height, c.width)).to(model.device)
