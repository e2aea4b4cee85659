"""scripts/multiscale_probe.py: a frame's P as the largest z-score over several error window sides."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

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
    run_probe: Callable[..., str], ped2: Path, tmp_path: Path
) -> None:
    """Test clips 01 (normal at first) and 09 (anomalous throughout) cut to 40 frames, their labels cut alike:
    the look reports on every scored frame with the setting the validation lines chose."""
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
    footage = tmp_path / "testing" / "frames"
    out = run_probe("multiscale_probe.py", "--test", str(footage), "--out", str(tmp_path / "look"))
    look = out.splitlines()[len(probe.SETS) + 2 :]
    chosen = re.search(r"all of them as options: validation AUC [\d.]+ % \(error window (.+?), distance", out).group(1)
    assert look[0].startswith(f"test look ({chosen}): streaming fused AUC") and "events alerted" in look[1]
    report = json.loads((tmp_path / "look" / "report.json").read_text())
    assert probe.error(report["calibration"]["error_window"]) == chosen
    assert 0.0 <= report["metrics"]["streaming"]["fused"]["auc"] <= 1.0
    scored = [k[4:] for k in kept]  # a clip's first 4 frames have no score
    assert report["events"]["checkpoint"]["normal_frames"] == sum(int((k == 0).sum()) for k in scored)
    assert report["events"]["checkpoint"]["events"] == sum(int(k.any()) for k in scored)
