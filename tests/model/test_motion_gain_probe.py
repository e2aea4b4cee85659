"""scripts/motion_gain_probe.py: the worst window's error over the error of copying the last frame there."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TinyWindows, assert_variant_lines

from model import regions, scoring

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import motion_gain_probe as probe  # noqa: E402


def plain_share_window(error: torch.Tensor, copy: torch.Tensor, size: int, eps: float) -> torch.Tensor:
    """The reference: every window's mean error over its mean copy error + eps by a plain loop, the largest."""
    stride, out = size // 2, []
    for e, c in zip(error, copy):
        shares = [
            e[y : y + size, x : x + size].mean() / (c[y : y + size, x : x + size].mean() + eps)
            for y in range(0, e.shape[0] - size + 1, stride)
            for x in range(0, e.shape[1] - size + 1, stride)
        ]
        out.append(torch.stack(shares).max())
    return torch.stack(out)


@pytest.mark.parametrize("eps", probe.EPSILONS)
def test_the_share_window_matches_a_plain_loop(eps: float) -> None:
    torch.manual_seed(0)
    error, copy = torch.rand(3, 32, 48) * 1e-2, torch.rand(3, 32, 48) * 1e-2
    got = probe.gain_worst(error, copy, 8, eps)
    torch.testing.assert_close(got.value, plain_share_window(error, copy, 8, eps))
    x, y, w, h = got.box[0].tolist()
    assert (w, h) == (8, 8)
    share = error[0, y : y + h, x : x + w].mean() / (copy[0, y : y + h, x : x + w].mean() + eps)
    torch.testing.assert_close(share, got.value[0])  # the box is the window that set the value


def test_a_walker_the_model_follows_ranks_below_a_smaller_error_it_could_not_explain() -> None:
    error, copy = torch.full((1, 32, 48), 1e-5), torch.full((1, 32, 48), 1e-5)
    error[0, 0:8, 0:8], copy[0, 0:8, 0:8] = 3e-3, 1e-2  # a high-contrast walker: most of his motion predicted
    walker = probe.gain_worst(error, copy, 8, 1e-3)
    error[0, 16:24, 32:40], copy[0, 16:24, 32:40] = 2e-3, 2e-3  # a fainter cart at the wrong speed
    assert regions.worst_window(error, 8).box[0, :2].tolist() == [0, 0]  # absolute: the walker is worst
    cart = probe.gain_worst(error, copy, 8, 1e-3)
    assert cart.box[0, :2].tolist() == [32, 16] and cart.value > walker.value


def test_a_coded_side_uses_the_step_s_copy_error_only_on_the_error_map_and_only_while_open(
    tiny_windows: TinyWindows,
) -> None:
    net, x, target, items = tiny_windows
    config = net.config
    with probe.gains((config.height, config.width)):
        step = scoring.score_step(net, x, target, items, 0.0, (8, 8 + probe.CODE), (1, 1 + probe.CODE))
    assert scoring.score_step.__module__ == "model.scoring" and regions.worst_window.__module__ == "model.regions"
    copy = scoring.squared_error(x[:, -config.channels :], target)[:, 0]
    want = probe.gain_worst(step.error[:, 0], copy, 8, probe.EPSILONS[0]).value
    torch.testing.assert_close(step.region_psnr[:, 1], -10 * torch.log10(want))
    torch.testing.assert_close(
        step.region_psnr[:, 0], scoring.score_step(net, x, target, items, 0.0, (8,)).region_psnr[:, 0]
    )
    torch.testing.assert_close(step.region_distance[:, 0], step.region_distance[:, 1])  # the distance map: plain
    assert probe.error(16 + 2 * probe.CODE) == f"16 (share of the copy error, eps {probe.EPSILONS[1]})"


def test_the_probe_reports_each_option_on_real_footage(run_probe: Callable[..., str]) -> None:
    assert_variant_lines(run_probe("motion_gain_probe.py"), [f"eps {e}" for e in probe.EPSILONS], "share")
