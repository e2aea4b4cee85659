"""scripts/update_probe.py: the test-time memory update threshold, weighed as train weighs a setting."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from model.scoring import UPDATE_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import update_probe as probe  # noqa: E402


def test_the_grid_holds_the_paper_threshold_and_a_frozen_memory() -> None:
    assert UPDATE_THRESHOLD["prediction"] in probe.THRESHOLDS and 0.0 in probe.THRESHOLDS


def test_the_probe_reports_each_threshold_asked_for_and_picks_one_of_them(run_probe: Callable[..., str]) -> None:
    *lines, picked = run_probe("update_probe.py", "--thresholds", "0", "0.01").splitlines()
    assert [float(re.match(r"update threshold ([\d.]+):", line).group(1)) for line in lines] == [0.0, 0.01]
    aucs = {float(re.search(r"validation AUC ([\d.]+) %", line).group(1)) for line in lines}
    chosen = re.fullmatch(r"validation picks: update threshold ([\d.]+), AUC ([\d.]+) %", picked)
    assert chosen and float(chosen.group(1)) in (0.0, 0.01) and float(chosen.group(2)) in aucs
