"""Network shapes for both variants, and the config's validation."""

from __future__ import annotations

import pytest
import torch

from model.network import MemoryAE, ModelConfig


@pytest.mark.parametrize("variant", ["prediction", "reconstruction"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(variant: str, channels: int) -> None:
    config = ModelConfig(variant=variant, base_width=4, height=32, width=48, channels=channels)
    model = MemoryAE(config).eval()
    x = torch.rand(2, channels * config.input_frames, 32, 48) * 2 - 1
    out = model(x)
    assert out.frame.shape == (2, channels, 32, 48)
    assert out.queries.shape == (2, 4 * 6, config.feature_dim)  # N = H/8 * W/8 queries of C = 8w channels
    assert out.frame.abs().max() <= 1  # tanh output
    assert model.items.shape == (10, 32)
    per_sample = model(x, model.items.expand(2, -1, -1))
    torch.testing.assert_close(per_sample.frame, out.frame)


def test_skips_only_in_prediction_variant() -> None:
    pred = MemoryAE(ModelConfig(base_width=4, height=16, width=16))
    recon = MemoryAE(ModelConfig(variant="reconstruction", base_width=4, height=16, width=16))
    assert pred.decoder.stage3[0].in_channels == 2 * recon.decoder.stage3[0].in_channels
    assert pred.encoder.stage1[0].in_channels == 4 and recon.encoder.stage1[0].in_channels == 1


def test_encoder_last_block_ends_on_conv() -> None:
    model = MemoryAE(ModelConfig(base_width=4, height=16, width=16))
    assert isinstance(model.encoder.stage4[-1], torch.nn.Conv2d)
    assert isinstance(model.encoder.stage3[-1], torch.nn.ReLU)


@pytest.mark.parametrize(
    "kwargs", [{"height": 100}, {"channels": 2}, {"variant": "other"}, {"memory_size": 1}, {"past_frames": 0}]
)
def test_invalid_config(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


def test_paper_setting_parameter_count() -> None:
    """Width 64 at 256x256 is the authors' network: about 15.6 M parameters."""
    model = MemoryAE(ModelConfig(base_width=64, channels=3))
    assert 15e6 < sum(p.numel() for p in model.parameters()) < 16.5e6
