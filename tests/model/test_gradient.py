"""The gradient loss against a plain loop, and what it charges a blurred prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.gradient import gradient_loss


def loop_reference(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Liu et al.'s sum over neighbours, written out pixel by pixel, then each direction's mean."""
    b, c, h, w = predicted.shape
    vertical = horizontal = 0.0
    for n in range(b):
        for k in range(c):
            p, t = predicted[n, k], target[n, k]
            for i in range(h):
                for j in range(w):
                    if i > 0:
                        vertical += abs(abs(p[i, j] - p[i - 1, j]) - abs(t[i, j] - t[i - 1, j])).item()
                    if j > 0:
                        horizontal += abs(abs(p[i, j] - p[i, j - 1]) - abs(t[i, j] - t[i, j - 1])).item()
    return vertical / (b * c * (h - 1) * w) + horizontal / (b * c * h * (w - 1))


def test_gradient_loss_matches_a_plain_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    predicted, target = torch.rand(2, 1, 5, 7, generator=generator), torch.rand(2, 1, 5, 7, generator=generator)
    assert abs(gradient_loss(predicted, target).item() - loop_reference(predicted, target)) < 1e-5


def test_a_shifted_brightness_costs_nothing_and_a_blur_does() -> None:
    """Edges, not levels: a prediction off by a constant has the target's gradients; a blurred one has not."""
    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:12, 6:10] = 1.0  # a walker's silhouette
    assert gradient_loss(target + 0.2, target).item() < 1e-6
    blurred = F.avg_pool2d(target, 3, stride=1, padding=1)
    assert gradient_loss(blurred, target).item() > 0.05
    assert gradient_loss(target, target).item() == 0.0
