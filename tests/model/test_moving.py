"""The motion-weighted frame loss: the plain MSE at gain 0 and under uniform weights, a loop's figure otherwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.moving import TAU, motion_weights, moving_loss, weighted_mse


def loop_reference(predicted: torch.Tensor, target: torch.Tensor, last: torch.Tensor, gain: float) -> float:
    total = weight_sum = 0.0
    b, c, h, w = target.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                change = sum(abs(float(target[i, k, y, x] - last[i, k, y, x])) for k in range(c)) / c
                weight = 1.0 + gain * min(change / TAU, 1.0)
                error = sum(float(predicted[i, k, y, x] - target[i, k, y, x]) ** 2 for k in range(c)) / c
                total += weight * error
                weight_sum += weight
    return total / weight_sum


def test_moving_loss_matches_a_plain_loop() -> None:
    g = torch.Generator().manual_seed(0)
    predicted, target, last = (torch.rand(2, 3, 5, 7, generator=g) * 2 - 1 for _ in range(3))
    assert abs(moving_loss(predicted, target, last, 10.0).item() - loop_reference(predicted, target, last, 10.0)) < 1e-5


def test_gain_zero_and_a_still_scene_are_the_plain_mse() -> None:
    g = torch.Generator().manual_seed(1)
    predicted, target, last = (torch.rand(2, 1, 6, 8, generator=g) for _ in range(3))
    plain = F.mse_loss(predicted, target).item()
    assert moving_loss(predicted, target, last, 0.0).item() == plain
    assert abs(moving_loss(predicted, target, target.clone(), 10.0).item() - plain) < 1e-6  # nothing moved: w = 1


def test_errors_where_the_scene_moved_cost_more() -> None:
    """The same error costs more on the pixels that changed than on the still ones, and weights are capped."""
    last = torch.zeros(1, 1, 4, 4)
    target = last.clone()
    target[..., :2, :2] = 1.0  # a walker arrived in the top-left corner
    weights = motion_weights(last, target, 10.0)
    assert weights[..., :2, :2].eq(11.0).all() and weights[..., 2:, :].eq(1.0).all()
    on_walker, on_pavement = target.clone(), target.clone()
    on_walker[..., 0, 0] += 0.5
    on_pavement[..., 3, 3] += 0.5
    assert moving_loss(on_walker, target, last, 10.0) > 5 * moving_loss(on_pavement, target, last, 10.0)
    assert weighted_mse(on_pavement, target, torch.ones_like(weights)) == F.mse_loss(on_pavement, target)
