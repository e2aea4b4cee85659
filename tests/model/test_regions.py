"""Worst-region measures against a plain loop over every window, and their boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.regions import QUERY_STRIDE, Regions, position_distance, worst_window


def reference(values: np.ndarray, size: int) -> tuple[float, tuple[int, int, int, int]]:
    """Every size x size window at stride size/2, by hand: the largest mean and its (x, y, w, h)."""
    h, w = values.shape
    kh, kw, stride = min(size, h), min(size, w), max(1, size // 2)
    best, box = -np.inf, (0, 0, 0, 0)
    for y in range(0, h - kh + 1, stride):
        for x in range(0, w - kw + 1, stride):
            mean = values[y : y + kh, x : x + kw].mean()
            if mean > best:
                best, box = mean, (x, y, kw, kh)
    return float(best), box


@pytest.mark.parametrize("size", [1, 2, 3, 8, 12, 16, 24])
def test_worst_window_matches_a_plain_loop(size: int) -> None:
    g = torch.Generator().manual_seed(size)
    maps = torch.rand(3, 32, 48, generator=g).pow(4)  # skewed, so one window clearly wins
    got = worst_window(maps, size)
    for b in range(3):
        value, box = reference(maps[b].numpy(), size)
        assert got.value[b].item() == pytest.approx(value, rel=1e-5)
        assert tuple(got.box[b].tolist()) == box


def test_zero_or_oversized_window_is_the_whole_frame_mean() -> None:
    maps = torch.rand(2, 16, 24)
    for size in (0, 24, 100):
        got = worst_window(maps, size)
        torch.testing.assert_close(got.value, maps.mean(dim=(1, 2)))
        assert got.box.tolist() == [[0, 0, 24, 16]] * 2


def test_a_small_bright_spot_dominates_the_window_not_the_frame_mean() -> None:
    """The reason for regions: an object on 1 % of the frame barely moves the mean, but owns its window."""
    maps = torch.full((1, 64, 96), 0.001)
    maps[0, 40:48, 16:24] = 0.1  # an 8x8 'cart'
    got = worst_window(maps, 8)
    assert got.value.item() == pytest.approx(0.1)
    assert got.box[0].tolist() == [16, 40, 8, 8]
    assert maps.mean().item() < 0.003


def test_position_distance_is_the_per_query_mean_square_on_the_query_grid() -> None:
    queries, nearest = torch.rand(2, 6, 5), torch.rand(2, 6, 5)
    got = position_distance(queries, nearest, 2 * QUERY_STRIDE, 3 * QUERY_STRIDE)  # (2, 2, 3)
    assert got.shape == (2, 2, 3)
    torch.testing.assert_close(got.flatten(1), (queries - nearest).pow(2).mean(-1))


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError):
        Regions(-1, 0)
