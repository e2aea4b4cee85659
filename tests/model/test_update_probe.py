"""scripts/update_probe.py: the test-time memory update threshold, weighed as train weighs a setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from model import checkpoint
from model.network import MemoryAE, ModelConfig
from model.scoring import UPDATE_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import update_probe as probe  # noqa: E402

CONFIG = ModelConfig(base_width=2, height=128, width=192, memory_size=6)  # the shipped input size, a tiny net


def test_the_grid_holds_the_paper_threshold_and_a_frozen_memory() -> None:
    assert UPDATE_THRESHOLD["prediction"] in probe.THRESHOLDS and 0.0 in probe.THRESHOLDS


def test_the_probe_reports_each_threshold_asked_for_and_picks_one_of_them(held_out: list[Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "a.safetensors", MemoryAE(CONFIG), 10.0, None, {})
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/update_probe.py"), str(tmp_path / "a.safetensors"),
         *map(str, held_out), "--draws", "1", "--thresholds", "0", "0.01"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    *lines, picked = out.stdout.splitlines()
    assert [float(re.match(r"update threshold ([\d.]+):", line).group(1)) for line in lines] == [0.0, 0.01]
    aucs = {float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in lines}
    chosen = re.fullmatch(r"validation picks: update threshold ([\d.]+), AUC ([\d.]+) %", picked)
    assert chosen and float(chosen.group(1)) in (0.0, 0.01) and float(chosen.group(2)) in aucs
