"""scripts/relative_error_probe.py: the worst error window over the frame's typical window."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model import regions

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import relative_error_probe as probe  # noqa: E402


def plain_quantile_window(values: torch.Tensor, size: int, q: float) -> torch.Tensor:
    """The reference: every window's mean by a plain loop, the largest over their q-quantile."""
    stride, out = size // 2, []
    for frame in values:
        means = [
            frame[y : y + size, x : x + size].mean()
            for y in range(0, frame.shape[0] - size + 1, stride)
            for x in range(0, frame.shape[1] - size + 1, stride)
        ]
        means = torch.stack(means)
        out.append(means.max() / means.quantile(q))
    return torch.stack(out)


@pytest.mark.parametrize("q", probe.QUANTILES)
def test_the_relative_window_matches_a_plain_loop_and_keeps_the_box(q: float) -> None:
    torch.manual_seed(0)
    values = torch.rand(3, 32, 48)
    got = probe.relative_worst(values, 8, q)
    torch.testing.assert_close(got.value, plain_quantile_window(values, 8, q))
    assert torch.equal(got.box, regions.worst_window(values, 8).box)


def test_a_floor_the_whole_frame_shares_cancels_and_a_local_error_does_not() -> None:
    torch.manual_seed(0)
    values = torch.rand(1, 32, 48)
    grainier = values + 0.5  # compression or sensor noise: every window's error rises
    spot = values.clone()
    spot[0, 8:16, 8:16] += 4.0  # a cart: one place errs
    base = probe.relative_worst(values, 8, 0.5).value
    assert probe.relative_worst(grainier, 8, 0.5).value < base  # the worst window no longer stands out as much
    torch.testing.assert_close(probe.relative_worst(values * 3, 8, 0.5).value, base)  # a gain cancels exactly
    assert probe.relative_worst(spot, 8, 0.5).value > 2 * base


def test_a_coded_side_is_relative_only_on_the_error_map_and_only_while_open() -> None:
    torch.manual_seed(0)
    error, distance = torch.rand(2, 32, 48), torch.rand(2, 4, 6)
    with probe.relative((32, 48)):
        median = regions.worst_window(error, 8 + probe.CODE)
        busiest = regions.worst_window(error, 8 + 2 * probe.CODE)
        plain = regions.worst_window(error, 8)
        other_map = regions.worst_window(distance, 2 + probe.CODE)
    assert regions.worst_window is probe.regions.worst_window and regions.worst_window.__module__ == "model.regions"
    torch.testing.assert_close(median.value, probe.relative_worst(error, 8, 0.5).value)
    torch.testing.assert_close(busiest.value, probe.relative_worst(error, 8, 0.9).value)
    torch.testing.assert_close(plain.value, regions.worst_window(error, 8).value)
    torch.testing.assert_close(other_map.value, regions.worst_window(distance, 2).value)
    assert probe.error(16 + probe.CODE) == "16 (relative to the q 0.5 window)" and probe.error(16) == "16"


def test_the_probe_reports_each_option_on_real_footage(run_probe: Callable[..., str]) -> None:
    landed, median, busiest, every = run_probe("relative_error_probe.py").splitlines()
    assert "relative" not in landed.split(";")[0].split("distance window")[0]
    assert "q 0.5 window" in median.split(";")[0] and "q 0.9 window" in busiest.split(";")[0]
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in (landed, median, busiest, every)]
    assert aucs[3] in aucs[:3]  # with every option, validation's choice is one of the three subsets' choices
