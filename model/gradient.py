"""The gradient loss of the future-frame predictor MNAD builds on (Liu et al., CVPR 2018; Mathieu et al., 2016).

An intensity loss alone is minimised by a blurred prediction: where a walker may go one way or another, the
mean of both is cheapest. The blur leaves error at every person's edges, and a busier day has more edges, so
its normal frames lose PSNR much as a small cart does. The gradient loss asks the prediction's absolute
spatial gradients to match the target's, which keeps edges sharp where the motion is predictable.
Not in MNAD's loss; off unless `train --lambda-gd` sets its weight.
"""

from __future__ import annotations

from torch import Tensor


def absolute_gradients(frames: Tensor) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> |differences| between vertical neighbours (B, C, H-1, W) and horizontal ones (B, C, H, W-1)."""
    return (frames[..., 1:, :] - frames[..., :-1, :]).abs(), (frames[..., :, 1:] - frames[..., :, :-1]).abs()


def gradient_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean L1 distance between the absolute gradients of prediction and target, both directions (alpha = 1)."""
    (py, px), (ty, tx) = absolute_gradients(predicted), absolute_gradients(target)
    return (py - ty).abs().mean() + (px - tx).abs().mean()
