"""scripts/calibration_shift.py: where a camera's normal frames sit from the calibration's, and, for a relative
error, where the frame's median window sits and how each part ranks the frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def report(tmp_path: Path, relative: bool) -> Path:
    """An `evaluate` report of two clips: one normal throughout, one whose last two frames are anomalous."""
    calibration = {"frames": 100, "error_window": 24, "distance_window": 4, "psnr_mean": 30.0, "psnr_std": 2.0,
                   "distance_mean": 1.0, "distance_std": 0.5, "distance_relative": False,
                   "error_relative": relative}  # fmt: skip
    clips = [
        {"labels": [0, 0, 0, 0], "region_psnr": [29.0, 31.0, 30.0, 30.0], "region_distance": [1.0] * 4,
         "distance_floor": [1.0] * 4, "error_floor": [44.0, 44.0, 44.0, 44.0]},
        {"labels": [0, 0, 1, 1], "region_psnr": [30.0, 30.0, 24.0, 25.0], "region_distance": [1.0] * 4,
         "distance_floor": [1.0] * 4, "error_floor": [41.5, 41.5, 40.5, 42.0]},
    ]  # fmt: skip
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"calibration": calibration, "clips": clips}))
    return path


def run(path: Path) -> list[str]:
    out = subprocess.run([sys.executable, str(ROOT / "scripts/calibration_shift.py"), str(path)],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_relative_error_report_shows_its_median_window_and_each_parts_ranking(tmp_path: Path) -> None:
    lines = run(report(tmp_path, relative=True))
    # the median window: 44 dB x 4 and 41.5 x 2 on normal frames, 40.5 and 42 on the anomalous (10 of 12 pairs)
    assert lines[0] == (
        "median error window per clip: 41.38-44.00 dB, 0.25 dB lower on the anomalous frames of the 1 clips that "
        "hold both; frame AUC of the worst window 100.00 %, the median window 83.33 %, the worst relative to the "
        "median 100.00 %"
    )
    assert lines[1] == "6 normal test frames; calibration on 100 held-out frames"
    # normal frames' relative P: -15, -13, -14, -14, -11.5, -11.5 -> mean -13.17 dB
    assert lines[2].startswith("P (error window 24 relative): calibration 30.00 ± 2.00 dB, normal test frames -13.17")


def test_an_absolute_report_prints_no_median_window(tmp_path: Path) -> None:
    lines = run(report(tmp_path, relative=False))
    assert lines[0] == "6 normal test frames; calibration on 100 held-out frames"
    assert lines[1].startswith("P (error window 24): calibration 30.00 ± 2.00 dB, normal test frames 30.00 dB: +0.0")
