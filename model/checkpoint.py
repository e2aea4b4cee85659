"""One self-describing checkpoint file (safetensors: no pickled code runs on load).

Tensors: the network's state dict, memory items included (key ``items``).
Metadata (strings): format tag and version, config, calibration, the training footage's
frame rate, and provenance (data, epochs, wall time, project commit).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.calibration import Calibration
from model.network import MemoryAE, ModelConfig

FORMAT = "mnad-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class Checkpoint:
    config: ModelConfig
    state: dict[str, torch.Tensor]
    fps: float  # frame rate of the training footage: live video is sampled at this rate
    calibration: Calibration | None = None
    provenance: dict = field(default_factory=dict)

    def build(self, device: torch.device | str = "cpu") -> MemoryAE:
        """The network in eval mode on `device`, weights and memory items loaded."""
        model = MemoryAE(self.config)
        model.load_state_dict(self.state)
        return model.to(device).eval()


def project_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def save(path: Path, model: MemoryAE, fps: float, calibration: Calibration | None, provenance: dict) -> None:
    """Write atomically: a crash mid-save never leaves a truncated checkpoint under `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "fps": repr(float(fps)),
        "calibration": json.dumps(calibration.to_dict() if calibration else None),
        "provenance": json.dumps(provenance),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)


def load(path: Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = load_file(str(path))
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            metadata = json.loads(f.read(header_len)).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an anomaly-detection checkpoint (format tag {metadata.get('format')!r})")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {metadata.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig(**json.loads(metadata["config"]))
        calibration_dict = json.loads(metadata.get("calibration") or "null")
        calibration = Calibration(**calibration_dict) if calibration_dict else None
        fps = float(metadata["fps"])
        provenance = json.loads(metadata.get("provenance") or "{}")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid metadata: {e}") from e
    expected = MemoryAE(config).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: weights do not match its config ({config}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    return Checkpoint(config, state, fps, calibration, provenance)
