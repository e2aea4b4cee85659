"""scripts/average_snapshots.py: the mean of a run's snapshots, its batch-norm statistics measured anew."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from model import checkpoint
from model.data import WindowDataset, load_clips
from model.network import MemoryAE, ModelConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ModelConfig(base_width=2, height=16, width=24, memory_size=6)


def test_weights_and_items_are_the_snapshots_mean_and_batch_norm_is_measured_on_the_training_windows(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    for name in ("01", "02"):  # the last clip is held out, as train does
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (32, 48), dtype=np.uint8))
    snapshots = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = MemoryAE(CONFIG)
        for m in model.modules():  # snapshots whose statistics differ from the mean network's
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
        snapshots.append(tmp_path / f"ep{seed}.safetensors")
        checkpoint.save(snapshots[-1], model, 10.0, None, {"epoch": seed})
    out = tmp_path / "mean.safetensors"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/average_snapshots.py"), *map(str, snapshots),
         "--data", str(tmp_path / "data"), "--fps", "10", "--out", str(out)],
        check=True, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    mean, states = checkpoint.load(out), [checkpoint.load(p).state for p in snapshots]
    assert mean.calibration is None and mean.provenance["epochs"] == [0, 1, 2]
    for key in ("encoder.stage1.0.weight", "decoder.head.6.weight", "items"):
        expected = torch.stack([s[key] for s in states]).mean(0)
        torch.testing.assert_close(mean.state[key], expected)
    # the first batch norm's statistics: the mean network's first convolution over clip 01's 8 windows (02 held out)
    clips = load_clips(tmp_path / "data", CONFIG, 10.0)
    inputs = torch.stack([x for x, _ in WindowDataset(clips[:1], CONFIG)])  # (8, T*ch, H, W)
    model = mean.build("cpu")
    with torch.no_grad():
        conv = model.encoder.stage1[0](inputs)  # (8, C, H, W)
    assert mean.state["encoder.stage1.1.num_batches_tracked"] == 1
    torch.testing.assert_close(mean.state["encoder.stage1.1.running_mean"], conv.mean(dim=(0, 2, 3)))
