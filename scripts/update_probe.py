"""The test-time memory update threshold, chosen on validation instead of fixed at the paper's value.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). At test time
a frame teaches the memory (the update, Eq. 3-4) when its weighted prediction error is below a threshold,
the paper's 0.01 for prediction (`model.scoring.UPDATE_THRESHOLD`), a figure from the authors' footage and
error scale. Too high, the memory learns the event it should flag; too low, it cannot follow the normal
footage of its camera. This scores the held-out clips and their validation streams once
per threshold (0 freezes the memory) and chooses every setting as `train` does, for each and over all.

    python scripts/update_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import probe_lines

from model import validation

THRESHOLDS = (0.0, 0.005, 0.01, 0.02)  # runs/update/SHIP-RULE.txt; 0.01 is the paper's and the landed one


def main() -> None:
    parser = probe_lines.parser(__doc__)
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    args = parser.parse_args()
    held = probe_lines.held_out(args)
    tables = []
    for threshold in args.thresholds:
        normal, anomalous = probe_lines.scored(held._replace(update_threshold=threshold))
        table = validation.choose(
            normal, anomalous, held.labels, benign=held.benign, busy=held.busy, drifts=validation.DRIFTS
        )
        tables += [(choice, calibration, threshold) for choice, calibration in table]
        line = probe_lines.chosen(f"update threshold {threshold}", table, anomalous, held.fakes, held.labels)
        print(line, flush=True)
    best, calibration = validation.pick([(c, cal) for c, cal, _ in tables])
    threshold = next(t for _, cal, t in tables if cal is calibration)
    print(f"validation picks: update threshold {threshold}, AUC {100 * best.auc:.2f} %", flush=True)


if __name__ == "__main__":
    main()
