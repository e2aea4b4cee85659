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


def test_the_paper_skips_by_default_and_fewer_on_request() -> None:
    assert ModelConfig().skips == 3 and ModelConfig(variant="reconstruction").skips == 0
    small = {"base_width": 4, "height": 16, "width": 16}
    decoders = {n: MemoryAE(ModelConfig(**small, skips=n)).decoder for n in range(4)}
    widths = {n: [d.stage3[0].in_channels, d.stage2[0].in_channels, d.head[0].in_channels] for n, d in decoders.items()}
    # the shallowest stages keep their skip first: 2 drops the deepest (stage 3), 1 keeps only the first
    assert widths == {0: [16, 8, 4], 1: [16, 8, 8], 2: [16, 16, 8], 3: [32, 16, 8]}


@pytest.mark.parametrize("skips", [0, 2])
def test_a_dropped_skip_carries_nothing(skips: int) -> None:
    """With stage 3's skip dropped, the output cannot depend on stage 3's features except through the
    memory read: changing them alone leaves the frame as it was."""
    torch.manual_seed(0)
    model = MemoryAE(ModelConfig(base_width=4, height=16, width=16, skips=skips)).eval()
    features, stages = model.encoder(torch.randn(1, 4, 16, 16))
    z = torch.cat([features, features], dim=1)
    before = model.decoder(z, stages)
    after = model.decoder(z, [stages[0], stages[1], torch.randn_like(stages[2])])
    torch.testing.assert_close(before, after)
    changed = model.decoder(z, [torch.randn_like(stages[0]), stages[1], stages[2]])
    assert (changed - before).abs().max() > 1e-3 if skips else torch.equal(changed, before)


def test_with_a_background_the_queries_see_what_is_in_the_scene_not_the_place() -> None:
    """The same walker over two different empty scenes gives the same queries once each model knows its
    scene; without one, the scene's texture is what the queries see."""
    torch.manual_seed(0)
    config = ModelConfig(base_width=4, height=16, width=24, background=True)
    first, second = MemoryAE(config).eval(), MemoryAE(config).eval()
    second.load_state_dict(first.state_dict())
    scenes = torch.rand(2, 1, 16, 24) * 1.2 - 0.6  # two places, (ch, H, W) each
    first.background.copy_(scenes[0])
    second.background.copy_(scenes[1])
    walker = torch.zeros(1, 4, 16, 24)
    for t in range(4):
        walker[0, t, 4:10, 3 + 3 * t : 7 + 3 * t] = 0.3
    with_scene = (first(walker + scenes[0]).queries - second(walker + scenes[1]).queries).abs().max()
    plain = MemoryAE(ModelConfig(base_width=4, height=16, width=24)).eval()
    plain.load_state_dict({k: v for k, v in first.state_dict().items() if k != "background"})
    without = (plain(walker + scenes[0]).queries - plain(walker + scenes[1]).queries).abs().max()
    assert with_scene < 1e-6 and without > 1e-4  # random weights: queries differ little, but they do differ


def test_with_a_background_the_decoder_predicts_the_change_from_the_scene() -> None:
    """A decoder that outputs no change predicts the empty scene itself; its output is the change, doubled
    (a change spans [-2, 2]), and the frame stays in the pixel range."""
    model = MemoryAE(ModelConfig(base_width=4, height=16, width=24, background=True)).eval()
    model.background.copy_(torch.linspace(-1, 1, 16 * 24).view(1, 16, 24))
    last = model.decoder.head[-2]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(2, 4, 16, 24) * 2 - 1
    torch.testing.assert_close(model(x).frame, model.background.expand(2, 1, 16, 24))
    torch.nn.init.constant_(last.bias, 0.2)
    frame = model(x).frame
    change = 2 * torch.tanh(torch.tensor(0.2))
    torch.testing.assert_close(frame, (model.background + change).clamp(-1, 1).expand_as(frame))
    assert frame.max() == 1  # clipped where the scene is bright


def test_encoder_last_block_ends_on_conv() -> None:
    model = MemoryAE(ModelConfig(base_width=4, height=16, width=16))
    assert isinstance(model.encoder.stage4[-1], torch.nn.Conv2d)
    assert isinstance(model.encoder.stage3[-1], torch.nn.ReLU)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"height": 100},
        {"channels": 2},
        {"variant": "other"},
        {"memory_size": 1},
        {"past_frames": 0},
        {"skips": 4},
        {"variant": "reconstruction", "skips": 1},  # would learn to copy its input
        {"frame_step": 0},
        {"variant": "reconstruction", "frame_step": 2},  # one frame: nothing to space apart
    ],
)
def test_invalid_config(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


def test_paper_setting_parameter_count() -> None:
    """Width 64 at 256x256 is the authors' network: about 15.6 M parameters."""
    model = MemoryAE(ModelConfig(base_width=64, channels=3))
    assert 15e6 < sum(p.numel() for p in model.parameters()) < 16.5e6
