"""Worst-region measures against a plain loop over every window, and their boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.regions import QUERY_STRIDE, Regions, position_distance, relative_psnr, worst_window


def reference(values: np.ndarray, size: int) -> tuple[float, tuple[int, int, int, int], float]:
    """Every size x size window at stride size/2, by hand: the largest mean, its (x, y, w, h), and the median
    window's mean (the lower middle one for an even count, as torch.median)."""
    h, w = values.shape
    kh, kw, stride = min(size, h), min(size, w), max(1, size // 2)
    best, box, means = -np.inf, (0, 0, 0, 0), []
    for y in range(0, h - kh + 1, stride):
        for x in range(0, w - kw + 1, stride):
            mean = values[y : y + kh, x : x + kw].mean()
            means.append(mean)
            if mean > best:
                best, box = mean, (x, y, kw, kh)
    return float(best), box, float(sorted(means)[(len(means) - 1) // 2])


@pytest.mark.parametrize("size", [1, 2, 3, 8, 12, 16, 24])
def test_worst_window_matches_a_plain_loop(size: int) -> None:
    g = torch.Generator().manual_seed(size)
    maps = torch.rand(3, 32, 48, generator=g).pow(4)  # skewed, so one window clearly wins
    got = worst_window(maps, size)
    for b in range(3):
        value, box, typical = reference(maps[b].numpy(), size)
        assert got.value[b].item() == pytest.approx(value, rel=1e-5)
        assert tuple(got.box[b].tolist()) == box
        assert got.typical[b].item() == pytest.approx(typical, rel=1e-5)


def test_a_grain_over_the_whole_frame_cancels_in_the_relative_error_and_a_spot_does_not() -> None:
    """Why P may be relative: a lower bitrate raises every window's error, a cart one window's."""
    maps = torch.rand(1, 64, 96) * 0.001 + 0.001
    cart = maps.clone()
    cart[0, 40:48, 16:24] = 0.1
    for scene in (maps, cart):
        grainier = worst_window(scene * 4, 8)  # four times the error everywhere
        plain = worst_window(scene, 8)
        psnr = [10 * torch.log10(1 / v) for v in (plain.value, plain.typical, grainier.value, grainier.typical)]
        torch.testing.assert_close(relative_psnr(psnr[2], psnr[3]), relative_psnr(psnr[0], psnr[1]))
    quiet, spot = (worst_window(m, 8) for m in (maps, cart))
    ratio = [relative_psnr(10 * torch.log10(1 / w.value), 10 * torch.log10(1 / w.typical)) for w in (quiet, spot)]
    assert ratio[1] < ratio[0] - 10  # the cart's window stands 10 dB further out from its frame's median


def test_whole_frame_typical_is_the_mean_and_a_relative_error_needs_a_window() -> None:
    maps = torch.rand(2, 16, 24)
    torch.testing.assert_close(worst_window(maps, 0).typical, maps.mean(dim=(1, 2)))
    with pytest.raises(ValueError, match="needs an error window"):
        Regions(0, 4, True, True)
    assert Regions(12, 4, True, True).error_relative


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


def watched_reference(values: np.ndarray, watched: np.ndarray, size: int) -> tuple[float, tuple[int, ...], float]:
    """The same loop under a mask: each window's mean over its watched share, windows under half watched left
    out (unless none is at least half watched: then every window with a watched place counts)."""
    h, w = values.shape
    kh, kw, stride = min(size, h), min(size, w), max(1, size // 2)
    windows = []
    for y in range(0, h - kh + 1, stride):
        for x in range(0, w - kw + 1, stride):
            share = watched[y : y + kh, x : x + kw].mean()
            mean = (values * watched)[y : y + kh, x : x + kw].mean() / max(share, 1e-12)
            windows.append((share, mean, (x, y, kw, kh)))
    counted = [wd for wd in windows if wd[0] >= 0.5] or [wd for wd in windows if wd[0] > 0]
    best = max(counted, key=lambda wd: wd[1])  # first of equals, as torch.max
    means = sorted(wd[1] for wd in counted)
    return float(best[1]), best[2], float(means[(len(means) - 1) // 2])


@pytest.mark.parametrize("size", [1, 3, 8, 12, 24])
def test_worst_window_under_a_mask_matches_a_plain_loop(size: int) -> None:
    g = torch.Generator().manual_seed(100 + size)
    maps = torch.rand(3, 32, 48, generator=g).pow(4)
    watched = torch.ones(3, 32, 48)
    watched[0, :, :20] = 0  # a band
    watched[1] = (torch.rand(32, 48, generator=g) > 0.3).float()  # speckle
    watched[2, 10:20, 10:30] = 0.25  # a soft edge (a polygon's side through pixels)
    got = worst_window(maps, size, watched)
    for b in range(3):
        value, box, typical = watched_reference(maps[b].numpy(), watched[b].numpy(), size)
        assert got.value[b].item() == pytest.approx(value, rel=1e-5)
        assert tuple(got.box[b].tolist()) == box
        assert got.typical[b].item() == pytest.approx(typical, rel=1e-5)


def test_a_masked_spot_no_longer_sets_the_score_and_a_full_mask_changes_nothing() -> None:
    maps = torch.full((1, 64, 96), 0.001)
    maps[0, 0:8, 80:96] = 0.5  # a clock in the corner, changing every frame
    maps[0, 40:48, 16:24] = 0.1  # a cart
    watched = torch.ones(1, 64, 96)
    assert worst_window(maps, 8).box[0].tolist() == [80, 0, 8, 8]  # the clock wins unmasked
    watched[0, 0:8, 80:96] = 0
    got = worst_window(maps, 8, watched)
    assert got.value.item() == pytest.approx(0.1) and got.box[0].tolist() == [16, 40, 8, 8]
    whole = worst_window(maps, 0, watched)
    assert whole.value.item() == pytest.approx((maps * watched).sum().item() / watched.sum().item())
    everywhere = torch.ones(1, 64, 96)
    for size in (0, 8, 12):
        plain, masked = worst_window(maps, size), worst_window(maps, size, everywhere)
        torch.testing.assert_close(masked.value, plain.value)
        torch.testing.assert_close(masked.typical, plain.typical)
        assert torch.equal(masked.box, plain.box)
