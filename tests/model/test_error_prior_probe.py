"""scripts/error_prior_probe.py: the error map weighed by the model's usual error per place."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import checkpoint, regions
from model.data import Clip
from model.network import MemoryAE, ModelConfig

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import error_prior_probe as probe  # noqa: E402

CONFIG = ModelConfig(base_width=2, height=16, width=24, memory_size=6)


def test_a_coded_window_is_the_plain_window_of_the_weighed_map() -> None:
    torch.manual_seed(0)
    prior, error = torch.rand(16, 24) + 0.2, torch.rand(3, 16, 24)
    distance = torch.rand(3, 2, 3)
    with probe.weighed(prior):
        plain = regions.worst_window(error, 8)
        sqrt = regions.worst_window(error, 8 + probe.CODE)
        full = regions.worst_window(error, 8 + 2 * probe.CODE)
        other_map = regions.worst_window(distance, 2 + probe.CODE)  # not the error map's shape: left alone
    assert regions.worst_window.__name__ == "worst_window" and regions.worst_window is probe.regions.worst_window
    torch.testing.assert_close(plain.value, regions.worst_window(error, 8).value)
    torch.testing.assert_close(sqrt.value, regions.worst_window(error / prior.sqrt(), 8).value)
    torch.testing.assert_close(full.value, regions.worst_window(error / prior, 8).value)
    assert torch.equal(full.box, regions.worst_window(error / prior, 8).box)
    torch.testing.assert_close(other_map.value, regions.worst_window(distance, 2).value)


def test_the_prior_has_mean_one_a_floor_and_the_map_shape() -> None:
    torch.manual_seed(0)
    model = MemoryAE(CONFIG).eval()
    frames = torch.randint(0, 255, (12, 16, 24, 1), dtype=torch.uint8).numpy()
    prior = probe.error_prior(model, [Clip("a", frames, 10.0)])
    assert prior.shape == (16, 24)
    assert prior.min() >= probe.FLOOR
    assert 1 - 1e-5 <= prior.mean().item() <= 1 + probe.FLOOR  # mean 1 until the floor lifts the lowest places


@pytest.fixture
def training(ped2: Path, tmp_path: Path) -> Path:
    """The first 40 frames of three Ped2 training clips, in the Ped2 layout (frames/NN)."""
    for name in ("01", "15", "16"):
        folder = tmp_path / "training" / "frames" / name
        folder.mkdir(parents=True)
        for f in sorted((ped2 / "training" / "frames" / name).glob("*.jpg"))[:40]:
            (folder / f.name).symlink_to(f)
    return tmp_path / "training"


def test_the_probe_reports_each_variant_on_real_footage(training: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "a.safetensors", MemoryAE(CONFIG), 10.0, None, {})
    args = ["--data", str(training), "--holdout", "15", "16", "--draws", "1"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/error_prior_probe.py"), str(tmp_path / "a.safetensors"), *args],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("prior from 1 training clips")
    landed, half, full, every = lines[1:]
    assert "prior α 0.0" in landed.split("calm PSNR")[0]
    assert "prior α 0.5" in half.split(";")[0] and "prior α 1.0" in full.split(";")[0]
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in (landed, half, full, every)]
    assert aucs[3] in aucs[:3]  # with every option, validation's choice is one of the three subsets' choices


def test_a_held_out_name_missing_from_the_data_is_refused(training: Path, tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "a.safetensors", MemoryAE(CONFIG), 10.0, None, {})
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/error_prior_probe.py"), str(tmp_path / "a.safetensors"),
         "--data", str(training), "--holdout", "15", "17"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2 and "not all in" in out.stderr
