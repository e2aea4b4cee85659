"""scripts/window_edge_probe.py: error windows past validation's largest side, weighed as train weighs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from model import checkpoint, regions, validation
from model.network import MemoryAE, ModelConfig

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import window_edge_probe as probe  # noqa: E402

CONFIG = ModelConfig(base_width=2, height=128, width=192, memory_size=6)  # the shipped input size, a tiny net


def test_the_wider_sides_are_real_windows_of_the_map_past_the_landed_grid() -> None:
    assert min(probe.WIDER) > max(validation.ERROR_WINDOWS)
    values = torch.rand(3, CONFIG.height, CONFIG.width)
    for side in probe.WIDER:
        worst = regions.worst_window(values, side)
        x, y, w, h = worst.box[0].tolist()
        assert (w, h) == (side, side) and x + w <= CONFIG.width and y + h <= CONFIG.height
        assert worst.value[0] < values[0].mean() + values[0].std()  # a window, not one pixel
        assert torch.allclose(worst.value[0], values[0, y : y + h, x : x + w].mean())


def test_the_probe_reports_the_landed_and_the_wider_sides_on_real_footage(held_out: list[Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "a.safetensors", MemoryAE(CONFIG), 10.0, None, {})
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/window_edge_probe.py"), str(tmp_path / "a.safetensors"),
         *map(str, held_out), "--draws", "1"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    landed, wider, every = out.stdout.splitlines()
    side = re.compile(r"\(error window (\d+),")
    assert int(side.search(landed).group(1)) in validation.ERROR_WINDOWS
    assert int(side.search(wider).group(1)) in probe.WIDER
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in (landed, wider, every)]
    assert aucs[2] in aucs[:2]  # with every side as an option, validation's choice is one of the two subsets'
