"""scripts/motion_share.py: how busy each normal clip is, and which clips to hold out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import motion_share as probe  # noqa: E402


def walkers(count: int, frames: int = 12, size: tuple[int, int] = (60, 90)) -> np.ndarray:
    """A still grey scene with `count` bright 6x6 squares moving 2 px a frame."""
    out = np.full((frames, *size), 100, np.uint8)
    for t in range(frames):
        for k in range(count):
            y, x = 4 + 8 * k, 2 + 2 * t
            out[t, y : y + 6, x : x + 6] = 220
    return out


def test_the_share_counts_the_pixels_that_moved_and_not_sensor_grain() -> None:
    still = np.full((5, 10, 10), 100, np.uint8)
    assert probe.motion_share(still).tolist() == [0.0, 0.0, 0.0]
    rng = np.random.default_rng(0)
    grain = (still + rng.integers(-5, 6, still.shape)).astype(np.uint8)
    assert probe.motion_share(grain).max() == 0.0  # below the level
    one, three = probe.motion_share(walkers(1)).mean(), probe.motion_share(walkers(3)).mean()
    assert one > 0 and three == np.float64(3 * one)  # three walkers, three times the moving pixels


def test_the_held_out_clips_sit_at_the_quantile_ranks() -> None:
    shares = {f"{k:02d}": s for k, s in enumerate([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4], start=1)}
    assert probe.held_out(shares, [0.25, 0.75]) == ["06", "05"]  # ranks 2 and 6 of 8: 0.2 and 0.7
    assert probe.held_out(shares, [0.0, 1.0]) == ["02", "01"]  # the quietest and the busiest
    assert probe.held_out(shares, [0.25, 0.26]) == ["06"]  # one clip is not held out twice


def test_the_command_reads_frame_folders_and_videos(tmp_path: Path) -> None:
    for name, count in (("01", 1), ("02", 3), ("03", 2), ("04", 0)):
        folder = tmp_path / "frames" / "frames" / name
        folder.mkdir(parents=True)
        for t, frame in enumerate(walkers(count)):
            cv2.imwrite(str(folder / f"{t:03d}.png"), frame)
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "motion_share.py"), str(tmp_path / "frames"), "--hold", "0.5"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    assert "ascending: 04 0.00, 01" in out and out.rstrip().endswith("hold out (quantile ranks 0.5): 01")
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (90, 60), isColor=False)
    for frame in walkers(2):
        writer.write(frame)
    writer.release()
    share = probe.motion_share(probe.grey_frames(video)).mean()
    assert abs(share - probe.motion_share(walkers(2)).mean()) < 0.01  # compression moves a few pixels at most
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    with pytest.raises(SystemExit, match="no frames could be read"):
        probe.grey_frames(broken)
