"""scripts/crossfit_probe.py: validation fitted on one held-out clip and scored on the streams of the other."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from model import checkpoint, validation
from model.calibration import Drift

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import crossfit_probe as probe  # noqa: E402


def test_a_stream_s_source_is_its_clip_name_before_the_kind() -> None:
    assert probe.source("15-paste0@1") == "15" and probe.source("16-crowd") == "16"
    assert probe.source("cam-a-rush2@0") == "cam-a"  # a clip name may hold a dash; a kind never does


def test_the_cross_fitted_row_averages_the_folds_and_keeps_the_in_sample_calibration() -> None:
    setting = dict(error_window=12, distance_window=4, weight=0.5, distance_relative=True, drift=Drift(100, 1.0))
    calibration = object()
    in_sample = [(validation.Choice(**setting, auc=0.9, benign_above_on=0.01, above={"exposure": 0.01}), calibration)]
    folds = [
        [(validation.Choice(**setting, auc=0.8, above={"exposure": 0.02, "crowd": 0.10}), object())],
        [(validation.Choice(**setting, auc=0.6, above={"exposure": 0.04, "crowd": 0.00}), object())],
    ]
    ((choice, kept),) = probe.cross_fitted(in_sample, folds)
    assert kept is calibration and choice.auc == pytest.approx(0.7)
    assert choice.above == pytest.approx({"exposure": 0.03, "crowd": 0.05})
    assert choice.benign_above_on == pytest.approx(0.05)  # the worst kind, after averaging over the folds
    other = dict(setting, weight=0.6)
    with pytest.raises(ValueError, match="align"):
        probe.cross_fitted(in_sample, [[(validation.Choice(**other, auc=0.5), object())]])


def test_the_probe_picks_under_both_and_writes_the_cross_fitted_pick(
    run_probe: Callable[..., str], tmp_path: Path
) -> None:
    out = tmp_path / "cross.safetensors"
    in_sample, cross, calm_psnr, wrote = run_probe("crossfit_probe.py", "--out", str(out)).splitlines()
    figures = r"AUC ([\d.]+) %.*above alert_on ([\d.]+) %; \S+ ([\d.]+) % \(worst benign ([\d.]+) %\)"
    own_in, worst_in, its_cross, worst_its_cross = map(float, re.search(figures, in_sample).groups())
    own_cross, worst_cross, its_in, worst_its_in = map(float, re.search(figures, cross).groups())
    calm = validation.MAX_BENIGN_ALARMS * 100
    if worst_in <= calm and worst_its_in <= calm:  # each pick is the best calm setting under its own figure
        assert own_in >= its_in
    if worst_cross <= calm and worst_its_cross <= calm:
        assert own_cross >= its_cross
    assert cross.startswith("cross-fitted pick") and calm_psnr.startswith("cross-fitted")
    setting = re.search(r"\((error window [^)]*)\)", cross).group(1)
    written = checkpoint.load(out)
    assert written.provenance["crossfit_probe"]["setting"] == setting and setting in wrote
    assert written.calibration.error_window == int(re.search(r"error window (\d+)", setting).group(1))
