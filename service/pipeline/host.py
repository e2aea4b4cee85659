"""Model host: every checkpoint of the models directory, loaded once onto one device and warmed up.

Normality is scene-specific, so each camera names the model trained on its own footage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model import checkpoint
from model.calibration import Calibration
from model.inference import InferencePath
from model.inference import build as build_inference
from model.network import MemoryAE
from model.scoring import UPDATE_THRESHOLD, score_step
from service.core.exceptions import UnknownModel

log = logging.getLogger(__name__)


@dataclass
class HostedModel:
    name: str
    path: Path
    checkpoint: checkpoint.Checkpoint
    net: MemoryAE
    device: torch.device
    items: torch.Tensor  # (M, C) the checkpoint's memory: each stream starts from a clone
    update_threshold: float
    calibration: Calibration
    inference: InferencePath  # the forward the engine runs: net on the backend MNAD_INFERENCE chose

    @property
    def config(self):
        return self.checkpoint.config

    @property
    def fps(self) -> float:
        return self.checkpoint.fps

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "device": str(self.device),
            "fps": self.fps,
            "window": self.config.window,
            "config": self.config.to_dict(),
            "calibration": self.calibration.to_dict(),
            "inference": self.inference.describe(),
            "provenance": self.checkpoint.provenance,
        }


def load_model(path: Path, device: torch.device, name: str | None = None, inference: str = "fp32") -> HostedModel:
    ckpt = checkpoint.load(path)
    if ckpt.calibration is None:
        raise checkpoint.CheckpointError(f"{path}: no calibration (trained without holdout): live scores need one")
    net = ckpt.build(device)
    model = HostedModel(
        name or path.stem, path, ckpt, net, device, net.items.detach().clone(),
        UPDATE_THRESHOLD[ckpt.config.variant], ckpt.calibration, build_inference(inference, net, device),
    )  # fmt: skip
    warm_up(model)
    return model


def warm_up(model: HostedModel, batches: tuple[int, ...] = (1, 2)) -> None:
    """Throwaway batches: first-call allocations and kernel selection happen before the first camera frame."""
    c = model.config
    for batch in batches:
        x = torch.zeros(batch, c.input_frames * c.channels, c.height, c.width, device=model.device)
        target = torch.zeros(batch, c.channels, c.height, c.width, device=model.device)
        score_step(model.inference, x, target, model.items.expand(batch, -1, -1), model.update_threshold)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


@dataclass
class ModelHost:
    device: torch.device
    models: dict[str, HostedModel] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # file -> why it was not loaded
    default: str | None = None

    @classmethod
    def load_dir(
        cls, directory: Path, device: torch.device, default: str | None = None, inference: str = "fp32"
    ) -> ModelHost:
        host = cls(device)
        paths = sorted(Path(directory).glob("*.safetensors")) if Path(directory).is_dir() else []
        for path in paths:
            try:
                host.models[path.stem] = load_model(path, device, inference=inference)
                log.info("loaded model %s from %s on %s", path.stem, path, device)
            except checkpoint.CheckpointError as e:
                host.errors[str(path)] = str(e)
                log.error("skipping %s", e)
        if default is not None and default not in host.models:
            raise checkpoint.CheckpointError(
                f"default model {default!r} not among {sorted(host.models)} in {directory}"
            )
        host.default = default or ("ped2" if "ped2" in host.models else next(iter(host.models), None))
        return host

    def names(self) -> list[str]:
        return sorted(self.models)

    def list(self) -> list[HostedModel]:
        return list(self.models.values())

    def get(self, name: str | None) -> HostedModel:
        name = name or self.default
        if name not in self.models:
            raise UnknownModel(name, sorted(self.models))
        return self.models[name]
