"""How far a camera's normal frames sit from the calibration frames, per measure (no setting is chosen here).

    python scripts/calibration_shift.py runs/eval-ped2-v20/report.json

Reads what `evaluate` stored: the checkpoint's calibration (mean and spread of P and D on the
held-out normal frames it was fitted on) and, per scored test frame, the region measures and the
label. Prints the normal test frames' mean of each measure, as a ratio (D) or difference (P) to the
calibration's, in calibration standard deviations too: a term whose normal frames sit many spreads
away alarms on every normal frame, whatever its AUC.

For a calibration whose P is relative to the frame's median error window it also prints where that median
sits per clip and how the worst window, the median window and their difference each rank the frames
(`evaluate` reports the score's AUCs; these are its parts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score


def main(path: Path) -> None:
    report = json.loads(path.read_text())
    cal = report["calibration"]
    clips = report["clips"]
    labels = np.concatenate([np.asarray(c["labels"], bool) for c in clips])
    psnr = np.concatenate([c["region_psnr"] for c in clips])
    if cal.get("error_relative"):
        floor = np.concatenate([c["error_floor"] for c in clips])
        medians = [np.mean(c["error_floor"]) for c in clips]
        auc = [100 * roc_auc_score(labels, x) for x in (-psnr, -floor, floor - psnr)]
        mixed = [c for c in clips if 0 < sum(c["labels"]) < len(c["labels"])]  # clips with both kinds of frame
        by_kind = [[np.asarray(c["error_floor"])[np.asarray(c["labels"]) == k].mean() for c in mixed] for k in (0, 1)]
        moved = np.mean(by_kind[0]) - np.mean(by_kind[1])
        print(
            f"median error window per clip: {min(medians):.2f}-{max(medians):.2f} dB, {moved:.2f} dB lower on the "
            f"anomalous frames of the {len(mixed)} clips that hold both; frame AUC of the worst window {auc[0]:.2f} %, "
            f"the median window {auc[1]:.2f} %, the worst relative to the median {auc[2]:.2f} %"
        )
        psnr = psnr - floor
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
