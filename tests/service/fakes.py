"""A tiny deterministic model for unit tests of the engine, streams and alerts: no Ped2, no training, no weights.

It is hosted exactly as a checkpoint is (`service.pipeline.host.HostedModel`) and runs behind the real inference
interface (`model.inference.InferencePath`), so the engine's whole path runs (windows, score_step, regions, the
test-time memory update, calibration, heatmaps); only the forward is replaced. Its "prediction" of the next frame
is the last input frame, so the prediction error is the motion between the two frames: a still scene scores low,
a block that appears or moves scores high, reproducibly. Its queries encode each 8x8 block's brightness as an
angle in two of the feature channels, so the memory distance grows with brightness away from the memory items.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional

from model.calibration import Calibration
from model.checkpoint import Checkpoint
from model.inference import InferencePath
from model.network import MemoryAE, ModelConfig
from model.scoring import UPDATE_THRESHOLD
from service.pipeline.host import HostedModel

CONFIG = ModelConfig(base_width=1, height=32, width=48, channels=1, memory_size=4, past_frames=2)
# still frames: PSNR at its 100 dB ceiling, distance near 0; a moving block: PSNR well under 40 dB
CALIBRATION = Calibration(
    psnr_mean=60.0, psnr_std=5.0, distance_mean=0.5, distance_std=0.25, weight=0.6, alert_on=0.5, alert_off=0.4,
    frames=100,
)  # fmt: skip


def _items(config: ModelConfig) -> Tensor:
    """Memory items on the quarter circle of the first two channels: the brightness of dark to mid-grey blocks."""
    m, c = config.memory_size, config.feature_dim
    items = torch.zeros(m, c)
    angles = torch.linspace(0, math.pi / 4, m)
    items[:, 0], items[:, 1] = torch.cos(angles), torch.sin(angles)
    return items


def fake_forward(config: ModelConfig):
    """(x (B, T*ch, H, W) in [-1, 1], items) -> (prediction = the last input frame, unit-norm queries)."""

    def run(x: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        last = x[:, -config.channels :]
        brightness = functional.avg_pool2d(last.mean(dim=1, keepdim=True), 8)  # (B, 1, H/8, W/8)
        angle = (brightness.flatten(1) + 1) * (math.pi / 4)  # [-1, 1] -> [0, pi/2]
        queries = torch.zeros(x.shape[0], angle.shape[1], config.feature_dim, device=x.device)
        queries[..., 0], queries[..., 1] = torch.cos(angle), torch.sin(angle)
        return last.clone(), queries

    return run


def fake_model(name: str = "fake", fps: float = 10.0, calibration: Calibration = CALIBRATION) -> HostedModel:
    config = CONFIG
    net = MemoryAE(config).eval()
    net.items.copy_(_items(config))
    inference = InferencePath("fake", "fake", net, fake_forward(config), "previous frame as prediction")
    checkpoint = Checkpoint(config, {}, fps, calibration, {"fake": True})
    return HostedModel(name, Path(f"{name}.safetensors"), checkpoint, net, torch.device("cpu"), net.items.clone(),
                       UPDATE_THRESHOLD[config.variant], calibration, inference)  # fmt: skip


def still_frames(n: int, level: int = 60) -> np.ndarray:
    """(n, H, W, 1) uint8: the same grey picture n times, at the fake model's size."""
    return np.full((n, CONFIG.height, CONFIG.width, CONFIG.channels), level, np.uint8)


def moving_block(n: int, level: int = 60, block: int = 255) -> np.ndarray:
    """(n, H, W, 1) uint8: a bright 8x8 block crossing a grey picture, one block width per frame."""
    frames = still_frames(n, level)
    for i in range(n):
        x = (i * 8) % (CONFIG.width - 8)
        frames[i, 12:20, x : x + 8] = block
    return frames
