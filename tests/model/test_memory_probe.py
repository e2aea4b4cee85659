"""scripts/memory_probe.py: the collapse diagnosis docs/experiments.md quotes, on a tiny checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model import checkpoint
from model.network import MemoryAE, ModelConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ModelConfig(base_width=2, height=16, width=24, memory_size=6)


def probe(weights: Path, clip: Path) -> dict[str, float]:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts/memory_probe.py"), str(weights), str(clip)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return {line[:42].strip(): float(line[42:]) for line in run.stdout.splitlines()}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (32, 48), dtype=np.uint8))
    return folder


def test_probe_counts_items_in_use(tmp_path: Path, clip: Path) -> None:
    torch.manual_seed(0)
    model = MemoryAE(CONFIG)
    checkpoint.save(tmp_path / "a.safetensors", model, 10.0, None, {})
    spread = probe(tmp_path / "a.safetensors", clip)
    assert spread["memory items M"] == 6 and 1 <= spread["items ever nearest"] <= 6
    assert 1.0 <= spread["effective items (exp entropy of use)"] <= spread["items ever nearest"] + 1e-6
    assert spread["query dim C"] == CONFIG.feature_dim
    assert {"PSNR, bottleneck trained (dB)", "PSNR, bottleneck zeroed (dB)"} <= spread.keys()

    model.items.copy_(model.items[:1].expand_as(model.items))  # every item the same: one in use
    checkpoint.save(tmp_path / "b.safetensors", model, 10.0, None, {})
    collapsed = probe(tmp_path / "b.safetensors", clip)
    assert collapsed["items ever nearest"] == 1 and collapsed["effective items (exp entropy of use)"] == 1
    assert collapsed["largest item share"] == 1 and collapsed["positions whose item never changes"] == 1
    assert 0 <= spread["positions whose item never changes"] <= 1
