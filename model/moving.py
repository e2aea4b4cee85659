"""A frame loss weighted toward what moves (not in MNAD; off unless `train --motion-weight` sets A).

The mean squared error over a surveillance frame is mostly static pavement, which the skip connections copy
almost for free, so a small network spends little on the walkers, and a busier day's walkers are where its
normal frames lose PSNR. Each target pixel is weighted by how much it changed since the last input frame,
the part of the frame the prediction actually had to move:

    w = 1 + A * clamp(|target - last input| / tau, 0, 1),   loss = sum(w * e^2) / sum(w)

tau is 20 grey levels (scripts/motion_share.py's threshold for a moving pixel). A = 0 is the plain mean
squared error exactly. docs/experiments.md, "A frame loss weighted toward what moves", has what it did on Ped2.
"""

from __future__ import annotations

import torch
from torch import Tensor

TAU = 20 / 127.5  # 20 grey levels in the [-1, 1] scale of model.data.to_tensor


def motion_weights(last: Tensor, target: Tensor, gain: float) -> Tensor:
    """(B, C, H, W) last input frame and target -> (B, 1, H, W) weights in [1, 1 + gain]."""
    change = (target - last).abs().mean(dim=1, keepdim=True)  # (B, 1, H, W), mean over colour channels
    return 1.0 + gain * (change / TAU).clamp_(max=1.0)


def weighted_mse(predicted: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Mean squared error with per-pixel weights (B, 1, H, W), normalized by their sum so the scale stays the MSE's."""
    error = (predicted - target).square().mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (weights * error).sum() / weights.sum()


def moving_loss(predicted: Tensor, target: Tensor, last: Tensor, gain: float) -> Tensor:
    """The frame loss: plain MSE at gain 0, else weighted toward the pixels that changed since `last`."""
    if not gain:
        return torch.nn.functional.mse_loss(predicted, target)
    return weighted_mse(predicted, target, motion_weights(last, target, gain))
