"""How busy each normal clip is, and which clips span that when held out: no labels, no model.

Calibration and validation are fitted on the held-out clips, so they should look like the camera's normal
hours, busy ones included. A clip's busyness here is the share of pixels that change by more than
`--level` grey levels between frames `--step` apart (the walkers moving), averaged over the clip. The clips
at the quantile ranks of that share (`--hold`, default the 1/4 and 3/4 ranks) are the ones to hold out:

    python scripts/motion_share.py ../shared/datasets/ped2/training [--hold 0.25 0.75]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from model.data import IMAGE_SUFFIXES, list_clips


def motion_share(frames: np.ndarray, level: int = 20, step: int = 2) -> np.ndarray:
    """(T, H, W) grey uint8 -> (T - step,) share of pixels changing by more than `level` over `step` frames."""
    moved = np.abs(frames[step:].astype(np.int16) - frames[:-step].astype(np.int16)) > level
    return moved.mean(axis=(1, 2))


def grey_frames(source: Path) -> np.ndarray:
    """A clip's frames in grey at full size: a frame folder or a video file."""
    if source.is_dir():
        files = sorted(f for f in source.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])
    capture, frames = cv2.VideoCapture(str(source)), []
    while (got := capture.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2GRAY))
    capture.release()
    if not frames:
        raise SystemExit(f"{source}: no frames could be read (not a video OpenCV can decode?)")
    return np.stack(frames)


def held_out(shares: dict[str, float], quantiles: list[float]) -> list[str]:
    """The clips at the given quantile ranks of their mean share, ascending (rank round(q * n), 1-indexed)."""
    ordered = sorted(shares, key=shares.get)
    ranks = [min(len(ordered), max(1, round(q * len(ordered)))) for q in quantiles]
    return [ordered[r - 1] for r in dict.fromkeys(ranks)]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("footage", type=Path, help="normal footage: a folder of frame folders (Ped2 layout) or videos")
    cli.add_argument("--level", type=int, default=20, help="grey levels a pixel must change by to count as moving")
    cli.add_argument("--step", type=int, default=2, help="frames apart")
    cli.add_argument("--hold", type=float, nargs="+", default=[0.25, 0.75], help="quantile ranks to hold out")
    args = cli.parse_args()
    shares = {}
    for source in list_clips(args.footage):
        share = motion_share(grey_frames(source), args.level, args.step)
        shares[source.name] = float(share.mean())
        print(f"{source.name}: {len(share) + args.step} frames, moving {100 * share.mean():.2f} % "
              f"(p90 {100 * np.percentile(share, 90):.2f} %)")  # fmt: skip
    print("ascending: " + ", ".join(f"{c} {100 * shares[c]:.2f}" for c in sorted(shares, key=shares.get)))
    print(f"hold out (quantile ranks {', '.join(map(str, args.hold))}): {', '.join(held_out(shares, args.hold))}")


if __name__ == "__main__":
    main()
