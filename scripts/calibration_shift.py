"""How far a camera's normal frames sit from the calibration frames, per measure (no setting is chosen here).

    python scripts/calibration_shift.py runs/eval-ped2-v20/report.json

Reads what `evaluate` stored: the checkpoint's calibration (mean and spread of P and D on the
held-out normal frames it was fitted on) and, per scored test frame, the region measures and the
label. Prints the normal test frames' mean of each measure, as a ratio (D) or difference (P) to the
calibration's, in calibration standard deviations too: a term whose normal frames sit many spreads
away alarms on every normal frame, whatever its AUC.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(path: Path) -> None:
    report = json.loads(path.read_text())
    cal = report["calibration"]
    clips = report["clips"]
    labels = np.concatenate([np.asarray(c["labels"], bool) for c in clips])
    psnr = np.concatenate([c["region_psnr"] for c in clips])
    if cal.get("error_relative"):
        psnr = psnr - np.concatenate([c["error_floor"] for c in clips])
    psnr = psnr[~labels]
    relative = " relative" if cal.get("error_relative") else ""
    distance = np.concatenate([c["region_distance"] for c in clips])
    if cal.get("distance_relative"):
        distance = distance / np.maximum(np.concatenate([c["distance_floor"] for c in clips]), 1e-12)
    distance = distance[~labels]
    print(f"{len(psnr)} normal test frames; calibration on {cal['frames']} held-out frames")
    print(
        f"P (error window {cal['error_window']}{relative}): "
        f"calibration {cal['psnr_mean']:.2f} ± {cal['psnr_std']:.2f} dB, "
        f"normal test frames {psnr.mean():.2f} dB: {(cal['psnr_mean'] - psnr.mean()) / cal['psnr_std']:+.1f} spreads"
    )
    print(
        f"D (distance window {cal['distance_window']}): calibration {cal['distance_mean']:.3g} ± "
        f"{cal['distance_std']:.2g}, normal test frames {distance.mean():.3g}: "
        f"x{distance.mean() / cal['distance_mean']:.1f}, "
        f"{(distance.mean() - cal['distance_mean']) / cal['distance_std']:+.1f} spreads"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/eval-ped2/report.json"))
