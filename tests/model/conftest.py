"""Fixtures the model tests share."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from model import checkpoint
from model.network import MemoryAE, ModelConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SIZE = ModelConfig(base_width=2, height=128, width=192, memory_size=6)  # the shipped input size, a tiny net


class TinyWindows(NamedTuple):
    """A tiny untrained network and one random batch of windows for it: what `scoring.score_step` takes."""

    net: MemoryAE
    x: torch.Tensor  # (2, T * ch, 32, 48) past frames in [-1, 1]
    target: torch.Tensor  # (2, ch, 32, 48)
    items: torch.Tensor  # (2, M, C) one memory copy per window


@pytest.fixture
def tiny_windows() -> TinyWindows:
    torch.manual_seed(0)
    net = MemoryAE(ModelConfig(base_width=2, height=32, width=48, memory_size=6)).eval()
    config = net.config
    x = torch.rand(2, config.past_frames * config.channels, config.height, config.width) * 2 - 1
    target = torch.rand(2, config.channels, config.height, config.width) * 2 - 1
    return TinyWindows(net, x, target, net.items.detach().expand(2, -1, -1).clone())


@pytest.fixture
def held_out(ped2: Path, tmp_path: Path) -> list[Path]:
    """The first 40 frames of Ped2's held-out training clips 15 and 16 (synthetic events need 28)."""
    clips = []
    for name in ("15", "16"):
        folder = tmp_path / name
        folder.mkdir()
        for f in sorted((ped2 / "training" / "frames" / name).glob("*.jpg"))[:40]:
            (folder / f.name).symlink_to(f)
        clips.append(folder)
    return clips


@pytest.fixture
def run_probe(held_out: list[Path], tmp_path: Path) -> Callable[..., str]:
    """Runs a validation probe in scripts/ on an untrained `SHIPPED_SIZE` network and `held_out`, one draw
    (`extra`: more of its options); its output, once it has succeeded."""

    def run(script: str, *extra: str) -> str:
        torch.manual_seed(0)
        checkpoint.save(tmp_path / "tiny.safetensors", MemoryAE(SHIPPED_SIZE), 10.0, None, {})
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), str(tmp_path / "tiny.safetensors"),
             *map(str, held_out), "--draws", "1", *extra],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


class CutFootage(NamedTuple):
    """Labelled test footage for a probe's test look: Ped2 test clips 01 (normal at first) and 09 (anomalous
    throughout) cut to 40 frames, in the Ped2 layout, and each clip's labels cut alike."""

    footage: Path
    labels: list[np.ndarray]


@pytest.fixture
def cut_test_footage(ped2: Path, tmp_path: Path) -> CutFootage:
    folders = sorted((ped2 / "testing" / "frames").iterdir())
    files = {f.name: sorted(f.glob("*.jpg")) for f in folders}
    offsets = dict(zip(files, np.cumsum([0, *map(len, files.values())])))
    labels, kept = np.load(ped2 / "frame_labels_ped2.npy").reshape(-1), []
    for name in ("01", "09"):
        (tmp_path / "testing" / "frames" / name).mkdir(parents=True)
        for f in files[name][:40]:
            (tmp_path / "testing" / "frames" / name / f.name).symlink_to(f)
        kept.append(labels[offsets[name] : offsets[name] + 40])
    np.save(tmp_path / "testing" / "frame_labels_cut.npy", np.concatenate(kept)[None])
    return CutFootage(tmp_path / "testing" / "frames", kept)


def assert_test_look(out: str, report_dir: Path, cut: CutFootage, named: Callable[[int], str]) -> None:
    """A probe's test look used the setting its validation lines chose ("all of them as options") and reported on
    every scored frame of `cut`."""
    chosen = re.search(r"all of them as options: validation AUC [\d.]+ % \(error window (.+?), distance", out).group(1)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("test look"))
    assert lines[at].startswith(f"test look ({chosen}): streaming fused AUC") and "events alerted" in lines[at + 1]
    report = json.loads((report_dir / "report.json").read_text())
    assert named(report["calibration"]["error_window"]) == chosen
    assert 0.0 <= report["metrics"]["streaming"]["fused"]["auc"] <= 1.0
    scored = [k[4:] for k in cut.labels]  # a clip's first 4 frames have no score
    assert report["events"]["checkpoint"]["normal_frames"] == sum(int((k == 0).sum()) for k in scored)
    assert report["events"]["checkpoint"]["events"] == sum(int(k.any()) for k in scored)


def assert_variant_lines(out: str, tags: Sequence[str], word: str) -> None:
    """A coded-variants probe's lines (`probe_lines.coded_variants`): the landed options (`word` not in their
    setting), each variant alone (its tag in the setting, unless the whole frame won, which has no variant), all of
    them; with every option, validation's choice is one of the subsets' choices."""
    lines = out.splitlines()
    assert len(lines) == len(tags) + 2
    landed, *alone, _ = lines
    assert word not in landed.split(";")[0]
    for line, tag in zip(alone, tags):
        assert tag in line.split(";")[0] or "error window 0," in line
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in lines]
    assert aucs[-1] in aucs[:-1]
