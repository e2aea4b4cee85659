"""Checkpoint round trip, and a named error for each kind of bad file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import checkpoint
from model.calibration import Calibration
from model.checkpoint import CheckpointError
from model.network import MemoryAE, ModelConfig

CONFIG = ModelConfig(base_width=2, height=16, width=24, memory_size=5)
CALIBRATION = Calibration(30.0, 2.0, 0.01, 0.005, 0.6, 0.7, 0.6, 300)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, MemoryAE]:
    torch.manual_seed(0)
    model = MemoryAE(CONFIG)
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, 10.0, CALIBRATION, {"epochs": 3, "data": "x"})
    return path, model


def test_round_trip(saved: tuple[Path, MemoryAE]) -> None:
    path, model = saved
    ckpt = checkpoint.load(path)
    assert ckpt.config == CONFIG and ckpt.fps == 10.0 and ckpt.calibration == CALIBRATION
    assert ckpt.provenance == {"epochs": 3, "data": "x"}
    rebuilt = ckpt.build()
    assert not rebuilt.training
    for (k, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(rebuilt.items, model.items)  # memory items travel with the weights


@pytest.mark.parametrize(("field", "value", "papers"), [("skips", 2, 3), ("frame_step", 2, 1)])
def test_a_shape_field_travels_and_older_checkpoints_get_the_papers(
    saved: tuple[Path, MemoryAE], tmp_path: Path, field: str, value: int, papers: int
) -> None:
    config = dataclasses.replace(CONFIG, **{field: value})
    checkpoint.save(tmp_path / "new.safetensors", MemoryAE(config), 10.0, None, {})
    assert checkpoint.load(tmp_path / "new.safetensors").config == config
    path, _ = saved
    older = {k: v for k, v in CONFIG.to_dict().items() if k != field}  # written before the field existed
    _rewrite(path, config=json.dumps(older))
    assert getattr(checkpoint.load(path).config, field) == papers


def test_the_background_travels_and_older_checkpoints_have_none(saved: tuple[Path, MemoryAE], tmp_path: Path) -> None:
    config = ModelConfig(base_width=2, height=16, width=24, memory_size=5, background=True)
    model = MemoryAE(config)
    model.background.uniform_(-1, 1)
    checkpoint.save(tmp_path / "scene.safetensors", model, 10.0, None, {})
    rebuilt = checkpoint.load(tmp_path / "scene.safetensors").build()
    assert rebuilt.config.background and torch.equal(rebuilt.background, model.background)
    path, _ = saved
    older = {k: v for k, v in CONFIG.to_dict().items() if k != "background"}  # written before the field existed
    _rewrite(path, config=json.dumps(older))
    loaded = checkpoint.load(path)
    assert not loaded.config.background and loaded.build().background is None and "background" not in loaded.state


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nope.safetensors")


def test_truncated(saved: tuple[Path, MemoryAE]) -> None:
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(path)


def test_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(path)


def test_foreign_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an anomaly-detection checkpoint"):
        checkpoint.load(path)


def _rewrite(path: Path, **metadata: str) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        meta = {**f.metadata(), **metadata}
    save_file(state, str(path), metadata=meta)


def test_newer_format_version(saved: tuple[Path, MemoryAE]) -> None:
    path, _ = saved
    _rewrite(path, format_version="99")
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.load(path)


def test_incompatible_weights(saved: tuple[Path, MemoryAE]) -> None:
    path, _ = saved
    _rewrite(path, config=json.dumps({**CONFIG.to_dict(), "base_width": 4}))
    with pytest.raises(CheckpointError, match="do not match its config"):
        checkpoint.load(path)


def test_invalid_config(saved: tuple[Path, MemoryAE]) -> None:
    path, _ = saved
    _rewrite(path, config=json.dumps({**CONFIG.to_dict(), "height": 13}))
    with pytest.raises(CheckpointError, match="invalid metadata"):
        checkpoint.load(path)


def test_save_is_atomic(saved: tuple[Path, MemoryAE]) -> None:
    path, _ = saved
    assert not path.with_name(path.name + ".tmp").exists()
