"""The gradient loss of the future-frame predictor MNAD builds on (Liu et al., CVPR 2018; Mathieu et al., 2016).

An intensity loss alone is minimised by a blurred prediction: where a walker may go one way or another, the
mean of both is cheapest, and the blur leaves error at every person's edges, more of it on a busier day. The
gradient loss asks the prediction's absolute spatial gradients to match the target's, which keeps edges sharp
where the motion is predictable. Not in MNAD's loss; off unless `train --lambda-gd` sets its weight. On Ped2
(docs/experiments.md, "A sharper prediction") it sharpened normal predictions and raised PSNR alone on too-fast walkers;
at Liu et al.'s weight 1 the decoder stopped needing the memory; at 0.1 one seed validated 0.65 points above
the same command without it and another 9.65 below its own twin.
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
