"""scripts/presence_probe.py: the worst window's error per unit of the foreground it holds."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from conftest import CutFootage, TinyWindows, assert_test_look, assert_variant_lines

from model import regions, scoring

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import motion_gain_probe as gain  # noqa: E402
import presence_probe as probe  # noqa: E402


def test_presence_is_what_differs_from_the_empty_scene() -> None:
    empty = torch.zeros(1, 8, 12)
    target = empty.expand(2, -1, -1, -1).clone()
    target[1, :, 2:4, 3:6] = 30 / 127.5  # someone 30 grey levels from the pavement
    target[1, :, 6, 0] = 10 / 127.5  # a flicker under the threshold
    present = probe.presence(empty)(torch.zeros(2, 4, 8, 12), target)
    assert present.shape == (2, 8, 12) and present[0].sum() == 0
    assert present[1, 2:4, 3:6].eq(1).all() and present[1].sum() == 6


def test_a_cart_on_open_pavement_outranks_a_crowd_with_more_error() -> None:
    error, present = torch.full((1, 32, 48), 1e-5), torch.zeros(1, 32, 48)
    error[0, 0:8, 0:8], present[0, 0:8, 0:8] = 3e-3, 1.0  # a window full of walkers
    error[0, 16:24, 32:40], present[0, 18:22, 34:38] = 2e-3, 1.0  # a smaller cart, a quarter of its window
    assert regions.worst_window(error, 8).box[0, :2].tolist() == [0, 0]  # absolute: the crowd is worst
    cart = gain.gain_worst(error, present, 8, probe.EPSILONS[0])
    assert cart.box[0, :2].tolist() == [32, 16]


def test_a_coded_side_uses_the_target_s_presence_only_on_the_error_map(tiny_windows: TinyWindows) -> None:
    net, x, target, items = tiny_windows
    config = net.config
    empty = torch.zeros(config.channels, config.height, config.width)
    with gain.gains((config.height, config.width), probe.presence(empty), probe.EPSILONS):
        step = scoring.score_step(net, x, target, items, 0.0, (8, 8 + 3 * gain.CODE), (1, 1 + gain.CODE))
    present = probe.presence(empty)(x, target)
    want = gain.gain_worst(step.error[:, 0], present, 8, probe.EPSILONS[2]).value
    torch.testing.assert_close(step.region_psnr[:, 1], -10 * torch.log10(want))
    torch.testing.assert_close(step.region_distance[:, 0], step.region_distance[:, 1])  # the distance map: plain
    assert probe.error(16 + 2 * gain.CODE) == f"16 (per unit of presence, eps {probe.EPSILONS[1]})"


def test_the_probe_reports_each_option_on_real_footage(run_probe: Callable[..., str]) -> None:
    assert_variant_lines(run_probe("presence_probe.py"), [f"eps {e}" for e in probe.EPSILONS], "presence")


def test_the_test_look_scores_labelled_footage_with_validation_s_choice(
    run_probe: Callable[..., str], cut_test_footage: CutFootage, tmp_path: Path
) -> None:
    out = run_probe("presence_probe.py", "--test", str(cut_test_footage.footage), "--out", str(tmp_path / "look"))
    assert_test_look(out, tmp_path / "look", cut_test_footage, probe.error)
