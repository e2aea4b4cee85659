"""Error windows past the edge of validation's grid.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). Nine of
ten candidates re-selected with the drift normalizer chose error window 32 px, the largest windowed side
validation weighs (`validation.ERROR_WINDOWS`): an optimum at a grid's edge may lie beyond it. This scores the
validation streams once with the grid widened (`WIDER`, on the 128×192 error map) and chooses every setting
as `train` does (distance windows, λ, drift, the calm check) twice: among the landed sides, and among all.

    python scripts/window_edge_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3
"""

from __future__ import annotations

import probe_lines

from model import validation

WIDER = (48, 64, 96)  # model pixels, past validation's largest windowed side


def main() -> None:
    held = probe_lines.held_out(probe_lines.parser(__doc__).parse_args())
    fakes, labels, sides = held.fakes, held.labels, (*validation.ERROR_WINDOWS, *WIDER)
    normal, anomalous = probe_lines.scored(held, sides)
    table = validation.choose(
        normal, anomalous, labels, sides, benign=held.benign, busy=held.busy, drifts=validation.DRIFTS
    )
    for name, allowed in (
        ("landed sides " + ", ".join(map(str, validation.ERROR_WINDOWS)), set(validation.ERROR_WINDOWS)),
        ("wider sides " + ", ".join(map(str, WIDER)) + " alone", set(WIDER)),
        ("all of them as options", set(sides)),
    ):
        rows = [r for r in table if r[0].error_window in allowed]
        extra = probe_lines.calm_psnr(rows)
        print(probe_lines.chosen(name, rows, anomalous, fakes, labels, sides, extra=extra), flush=True)


if __name__ == "__main__":
    main()
