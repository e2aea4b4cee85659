"""Several error window sides at once: the frame's P is its most surprising side.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). One window
side fits one object size: a bike or a cart is larger than a walker, a skater about a walker's size, and a
crowd raises the small windows most. Here each side's worst-window PSNR becomes a z-score against the held-out
normal clips (that side's mean and spread over their frames), and a frame's P is the largest z over a set of
sides, on one PSNR-like scale (the set's first side: mean - spread * z), so `train`'s choice (windows, λ,
drift, the calm check) weighs a set like any other error window.

    python scripts/multiscale_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3 [--test FOOTAGE --out DIR]

Rule: runs/multiscale/SHIP-RULE.txt. With `--test`, the labelled footage is then scored with the setting
validation chose over every option, fitted as it was, and `evaluate`'s streaming figures and alert report for
it are printed and written to DIR/report.json (the paper's protocol does not depend on the windows). The
choice is made before the test footage is read: the one test look a rule allows, not a way to choose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import probe_lines

from model import validation
from model.calibration import Calibration
from model.data import Clip
from model.scoring import ClipScores, score_clips

SETS: tuple[tuple[int, ...], ...] = ((8, 16, 32), (12, 24), (16, 32), (8, 12, 16, 24, 32))
CODE = 1000  # a set's window side is its first side + CODE * (1 + index in SETS)


def z_scale(normal: Sequence[ClipScores], column: int) -> tuple[float, float]:
    """One error window column's mean and spread over the held-out normal frames."""
    values = np.concatenate([s.region_psnr[:, column] for s in normal])
    return float(values.mean()), float(values.std()) or 1.0


def with_sets(scores: Sequence[ClipScores], normal: Sequence[ClipScores], sides: Sequence[int]) -> list[ClipScores]:
    """`scores` with one more error column per set of SETS: the largest z over its sides (lower PSNR, larger
    z), as mean - spread * z of its first side. The scales come from `normal`, whatever is scored."""
    scale = {k: z_scale(normal, sides.index(k)) for k in dict.fromkeys(k for s in SETS for k in s)}
    out = []
    for s in scores:
        columns = []
        for members in SETS:
            z = np.max([(scale[k][0] - s.region_psnr[:, sides.index(k)]) / scale[k][1] for k in members], axis=0)
            mean, spread = scale[members[0]]
            columns.append(mean - spread * z)
        floors = [s.error_floor[:, sides.index(members[0])] for members in SETS]  # a set's relative P: never weighed
        out.append(
            dataclasses.replace(
                s,
                region_psnr=np.column_stack([s.region_psnr, *columns]).astype(np.float32),
                error_floor=np.column_stack([s.error_floor, *floors]).astype(np.float32),
            )
        )
    return out


def error(side: int) -> str:
    """A window side in words: a landed side, or a set."""
    variant, _ = divmod(side, CODE)
    return f"the largest z of {'/'.join(map(str, SETS[variant - 1]))}" if variant else f"{side}"


def look(
    held: probe_lines.HeldOut, normal: Sequence[ClipScores], calibration: Calibration, footage: Path, out: Path
) -> None:
    """The test look with `calibration` (a set's side or a landed one), the sets' scales from `normal`."""
    landed, distances = list(validation.ERROR_WINDOWS), list(validation.DISTANCE_WINDOWS)

    def score(clips: list[Clip]) -> list[ClipScores]:
        plain = score_clips(held.net, clips, held.update_threshold, 16, "cpu", True, landed, distances)
        return with_sets(plain, normal, landed)

    sides = [*landed, *(m[0] + CODE * (1 + k) for k, m in enumerate(SETS))]
    probe_lines.look_at_test(held, calibration, footage, out, score, {"error": sides, "distance": distances}, error)


def main() -> None:
    args = probe_lines.parser(__doc__, Path("runs/multiscale/look")).parse_args()
    held = probe_lines.held_out(args)
    landed = list(validation.ERROR_WINDOWS)
    normal, anomalous = probe_lines.scored(held, landed)
    sides = [*landed, *(members[0] + CODE * (1 + i) for i, members in enumerate(SETS))]
    windows = {"error": sides, "distance": validation.DISTANCE_WINDOWS}
    names = [f"sides {'/'.join(map(str, members))}" for members in SETS]
    table = probe_lines.print_options(
        held, with_sets(normal, normal, landed), with_sets(anomalous, normal, landed), windows, names, CODE, error
    )
    if args.test is not None:
        look(held, normal, validation.pick(table)[1], args.test, args.out)


if __name__ == "__main__":
    main()
