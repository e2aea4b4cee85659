"""scripts/multiscale_probe.py: a frame's P as the largest z-score over several error window sides."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from conftest import CutFootage, assert_test_look

from model.scoring import ClipScores

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import multiscale_probe as probe  # noqa: E402

SIDES = [0, 8, 12, 16, 24, 32]


def clip(psnr: np.ndarray) -> ClipScores:
    """A scored clip with the given (T, 6) worst-window PSNRs, one column per side of SIDES."""
    t = len(psnr)
    zeros = np.zeros(t, np.float32)
    return ClipScores("c", zeros, zeros, 4, psnr.astype(np.float32), np.zeros((t, 1), np.float32), zeros + 1, psnr)


def test_a_set_takes_each_frame_s_most_surprising_side_on_its_first_side_s_scale() -> None:
    rng = np.random.default_rng(0)
    normal = [clip(rng.normal(30, 1, (200, 6)) + np.arange(6) * 2)]  # each side its own level
    frames = np.tile(np.mean(normal[0].region_psnr, axis=0), (3, 1))  # three frames at every side's mean
    frames[1, SIDES.index(32)] -= 3 * np.std(normal[0].region_psnr[:, SIDES.index(32)])  # a large object: z 3 at 32
    frames[2, SIDES.index(8)] -= 2 * np.std(normal[0].region_psnr[:, SIDES.index(8)])  # a small one: z 2 at 8
    got = probe.with_sets([clip(frames)], normal, SIDES)[0]
    assert got.region_psnr.shape == (3, 6 + len(probe.SETS))
    np.testing.assert_allclose(got.region_psnr[:, :6], frames, rtol=1e-6)  # the landed columns are untouched
    mean8, spread8 = probe.z_scale(normal, SIDES.index(8))
    first = got.region_psnr[:, 6]  # the set 8/16/32, on side 8's scale
    np.testing.assert_allclose(first, [mean8, mean8 - 3 * spread8, mean8 - 2 * spread8], atol=1e-3)
    np.testing.assert_allclose(got.region_psnr[2, 6 + probe.SETS.index((16, 32))], got.region_psnr[0, 8], atol=1e-3)
    assert got.error_floor.shape == (3, 6 + len(probe.SETS))


def test_a_set_names_its_sides() -> None:
    assert probe.error(8 + probe.CODE) == "the largest z of 8/16/32" and probe.error(12) == "12"


def test_the_probe_reports_each_option_on_real_footage(run_probe: Callable[..., str]) -> None:
    lines = run_probe("multiscale_probe.py").splitlines()
    assert len(lines) == len(probe.SETS) + 2
    landed, *alone, _ = lines
    assert "largest z" not in landed.split(";")[0]
    for line, members in zip(alone, probe.SETS):
        assert f"largest z of {'/'.join(map(str, members))}" in line.split(";")[0]
    aucs = [float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in lines]
    assert aucs[-1] in aucs[:-1]


def test_the_test_look_scores_labelled_footage_with_validation_s_choice(
    run_probe: Callable[..., str], cut_test_footage: CutFootage, tmp_path: Path
) -> None:
    out = run_probe("multiscale_probe.py", "--test", str(cut_test_footage.footage), "--out", str(tmp_path / "look"))
    assert_test_look(out, tmp_path / "look", cut_test_footage, probe.error)
