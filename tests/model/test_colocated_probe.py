"""scripts/colocated_probe.py: the memory distance of the block under the worst error window."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TinyWindows

from model import memory, regions, scoring

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import colocated_probe as probe  # noqa: E402

STRIDE = regions.QUERY_STRIDE


def plain_colocated(distance: torch.Tensor, error: torch.Tensor, side: int) -> torch.Tensor:
    """The reference by a plain loop: each block's pixels' mean error, and the distance of the worst one."""
    step, out = max(1, side // 2), []
    for d, e in zip(distance, error):
        cells = [(y, x) for y in range(0, d.shape[0] - side + 1, step) for x in range(0, d.shape[1] - side + 1, step)]
        pixels = [e[y * STRIDE : (y + side) * STRIDE, x * STRIDE : (x + side) * STRIDE].mean() for y, x in cells]
        y, x = cells[int(torch.stack(pixels).argmax())]
        out.append(d[y : y + side, x : x + side].mean())
    return torch.stack(out)


@pytest.mark.parametrize("side", [1, 2, 4])
def test_the_colocated_block_matches_a_plain_loop_and_its_box(side: int) -> None:
    torch.manual_seed(0)
    distance, error = torch.rand(3, 6, 8), torch.rand(3, 6 * STRIDE, 8 * STRIDE)
    got = probe.colocated_worst(distance, error, side)
    torch.testing.assert_close(got.value, plain_colocated(distance, error, side))
    x, y, w, h = got.box[1].tolist()
    assert (w, h) == (side, side)
    torch.testing.assert_close(distance[1, y : y + h, x : x + w].mean(), got.value[1])  # the box set the value


def test_odd_features_where_the_prediction_held_do_not_count() -> None:
    distance, error = torch.full((1, 6, 8), 0.1), torch.full((1, 6 * STRIDE, 8 * STRIDE), 1e-4)
    distance[0, 0:2, 0:2] = 5.0  # a crowd's texture: far from every item, predicted well
    error[0, 4 * STRIDE : 6 * STRIDE, 6 * STRIDE : 8 * STRIDE] = 1e-2  # a cart: the prediction failed here
    distance[0, 4:6, 6:8] = 0.8
    assert regions.worst_window(distance, 2).value[0] == pytest.approx(5.0)  # anywhere: the texture wins
    got = probe.colocated_worst(distance, error, 2)
    assert got.box[0, :2].tolist() == [6, 4] and got.value[0] == pytest.approx(0.8)


def test_a_coded_side_is_colocated_only_on_the_distance_map_and_only_while_open(tiny_windows: TinyWindows) -> None:
    net, x, target, items = tiny_windows
    config = net.config
    plain = scoring.score_step(net, x, target, items, 0.0, (8,), (2,))
    with probe.colocated((config.height, config.width)):
        step = scoring.score_step(net, x, target, items, 0.0, (8,), (2, 2 + probe.CODE))
    assert regions.worst_window.__module__ == "model.regions"
    torch.testing.assert_close(step.region_psnr, plain.region_psnr)  # the error windows stay plain
    torch.testing.assert_close(step.region_distance[:, 0], plain.region_distance[:, 0])
    out = net(x, items)
    nearest = memory.nearest_item(out.queries, items, memory.matching_scores(out.queries, items))
    distance_map = regions.position_distance(out.queries, nearest, config.height, config.width)
    want = probe.colocated_worst(distance_map, step.error[:, 0], 2).value
    torch.testing.assert_close(step.region_distance[:, 1], want)
    assert probe.distance(4 + probe.CODE) == "4 (under the worst error window)" and probe.distance(4) == "4"


def test_the_probe_reports_each_option_on_real_footage(run_probe: Callable[..., str]) -> None:
    lines = run_probe("colocated_probe.py").splitlines()
    assert len(lines) == 3
    landed, alone, _ = lines
    assert "under the worst error window" not in landed.split(";")[0]
    assert "under the worst error window" in alone.split(";")[0]  # only co-located blocks are options there
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in lines]
    assert aucs[-1] in aucs[:-1]  # with every option, validation's choice is one of the subsets' choices
