"""scripts/two_memories.py: one network's PSNR with another's distance, on a tiny checkpoint and real footage."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from model import checkpoint
from model.network import MemoryAE, ModelConfig
from model.scoring import ClipScores

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from two_memories import with_distance  # noqa: E402

CONFIG = ModelConfig(base_width=2, height=16, width=24, memory_size=6)


def run(*args: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/two_memories.py"), *map(str, args)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip


def test_a_network_paired_with_itself_validates_as_itself(held_out: list[Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "a.safetensors", MemoryAE(CONFIG), 10.0, None, {})
    out = run(tmp_path / "a.safetensors", tmp_path / "a.safetensors", *held_out)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and lines[2].startswith("PSNR of the first, distance of the second")
    aucs = [re.search(r"validation AUC ([\d.]+) %", line).group(1) for line in lines]
    assert aucs[0] == aucs[1] == aucs[2]
    assert all("fused AUC per kind: paste" in line and "rush" in line for line in lines)


def test_networks_of_different_windows_are_refused(held_out: list[Path], tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "a.safetensors", MemoryAE(CONFIG), 10.0, None, {})
    other = ModelConfig(base_width=2, height=16, width=24, memory_size=6, past_frames=2)
    checkpoint.save(tmp_path / "b.safetensors", MemoryAE(other), 10.0, None, {})
    out = run(tmp_path / "a.safetensors", tmp_path / "b.safetensors", *held_out)
    assert out.returncode == 2 and "different windows" in out.stderr


def test_the_pair_takes_psnr_from_the_first_and_distance_from_the_second() -> None:
    def scores(value: float) -> ClipScores:
        column = np.full(3, value, np.float32)
        return ClipScores(
            "c", column, column + 1, 4, column[:, None] + 2, column[:, None] + 3, column + 4, column[:, None] + 5
        )

    (both,) = with_distance([scores(10.0)], [scores(20.0)])
    assert both.psnr.tolist() == [10] * 3 and both.region_psnr.ravel().tolist() == [12] * 3
    assert both.distance.tolist() == [21] * 3 and both.region_distance.ravel().tolist() == [23] * 3
    assert both.distance_floor.tolist() == [24] * 3
    assert both.error_floor.ravel().tolist() == [15] * 3  # the error's median window goes with the PSNR
