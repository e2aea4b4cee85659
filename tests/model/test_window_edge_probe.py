"""scripts/window_edge_probe.py: error windows past validation's largest side, weighed as train weighs."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from model import regions, validation

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import window_edge_probe as probe  # noqa: E402

HEIGHT, WIDTH = 128, 192  # the shipped error map


def test_the_wider_sides_are_real_windows_of_the_map_past_the_landed_grid() -> None:
    assert min(probe.WIDER) > max(validation.ERROR_WINDOWS)
    values = torch.rand(3, HEIGHT, WIDTH)
    for side in probe.WIDER:
        worst = regions.worst_window(values, side)
        x, y, w, h = worst.box[0].tolist()
        assert (w, h) == (side, side) and x + w <= WIDTH and y + h <= HEIGHT
        assert worst.value[0] < values[0].mean() + values[0].std()  # a window, not one pixel
        assert torch.allclose(worst.value[0], values[0, y : y + h, x : x + w].mean())


def test_the_probe_reports_the_landed_and_the_wider_sides_on_real_footage(run_probe: Callable[..., str]) -> None:
    landed, wider, every = run_probe("window_edge_probe.py").splitlines()
    side = re.compile(r"\(error window (\d+),")
    assert int(side.search(landed).group(1)) in validation.ERROR_WINDOWS
    assert int(side.search(wider).group(1)) in probe.WIDER
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in (landed, wider, every)]
    assert aucs[2] in aucs[:2]  # with every side as an option, validation's choice is one of the two subsets'
