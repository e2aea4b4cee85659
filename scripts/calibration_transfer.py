"""What calibrating on the camera's own normal footage does to alerts, measured on Ped2's test camera.

    python scripts/calibration_transfer.py runs/eval-ped2/report.json

Reads the per-frame PSNR and feature distance that `evaluate` stored in report.json (a calibration
only rescales them: the frames, memories and raw scores are the same whichever calibration is in
use). The test clips that have normal frames are split into two folds; each fold plays an
operator's "this footage is normal" (`calibrate`, or POST /api/streams/{id}/calibration) and the
other fold, plus the fully anomalous clips, is scored with that calibration. Per calibration:
the share of normal and of anomalous frames at or above the alert threshold (alert_on, the 99th
percentile of the fitted frames). Nothing here chooses a setting; the AUC does not change (a
calibration is a fixed monotone map).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from model import checkpoint
from model.scoring import Calibration

FOLDS = (("01", "03", "05", "07"), ("02", "04", "06", "12"))  # the clips with normal frames, alternating


def rates(cal: Calibration, clips: list[dict]) -> tuple[float, float, int, int]:
    psnr = np.concatenate([c["psnr"] for c in clips])
    distance = np.concatenate([c["distance"] for c in clips])
    labels = np.concatenate([c["labels"] for c in clips]).astype(bool)
    above = np.asarray(cal.score(psnr, distance)) >= cal.alert_on
    return float(above[~labels].mean()), float(above[labels].mean()), int((~labels).sum()), int(labels.sum())


def main(path: Path) -> None:
    report = json.loads(path.read_text())
    weight = report["fusion_weight"]
    clips = {c["name"]: {k: np.asarray(v) if k != "name" else v for k, v in c.items()} for c in report["clips"]}
    weights = Path(report["weights"])  # the checkpoint evaluate scored, whose calibration ships with it
    shipped = checkpoint.load(weights if weights.is_file() else Path("weights/ped2.safetensors")).calibration
    print("| calibration | fitted on | scored clips | normal frames >= alert_on | anomalous frames >= alert_on |")
    print("| --- | --- | --- | --- | --- |")
    for fold in FOLDS:
        other = [n for n in clips if n not in fold]
        fit_on = [clips[n] for n in fold]
        psnr = np.concatenate([c["psnr"][c["labels"] == 0] for c in fit_on])
        distance = np.concatenate([c["distance"][c["labels"] == 0] for c in fit_on])
        camera = Calibration.fit(psnr, distance, weight)
        for name, cal, source in (
            ("checkpoint's", shipped, f"training clips 15-16 ({shipped.frames} frames)"),
            ("camera's", camera, f"normal frames of test clips {', '.join(fold)} ({len(psnr)} frames)"),
        ):
            fp, tp, n, a = rates(cal, [clips[n] for n in other])
            print(f"| {name} | {source} | {', '.join(other)} ({n} normal, {a} anomalous) | {100 * fp:.1f} % |"
                  f" {100 * tp:.1f} % |")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/eval-ped2/report.json"))
