"""Validation cross-fitted between the held-out clips: does a setting's calibration transfer to a clip it never saw?

A validation-only probe (held-out normal clips and their synthetic events, never test footage). `train` fits
each setting's normalization and thresholds on the very clips its synthetic streams are made from. A new
camera, or a new day of the same one, is not those clips: Ped2's test frames sit a spread off the calibration
in PSNR and their memory distance moves. Here each fold fits on one held-out clip's normal frames (and its
busier day) and scores the streams made from the other clips; a setting's AUC is the mean over the folds, its
share of benign frames above alert_on the mean over the folds per kind (the worst kind counts, as in `pick`).

Prints the setting in-sample validation picks and the one the cross-fit picks, each under both figures. With
`--out`, writes the checkpoint with the cross-fitted pick's calibration fitted on every held-out clip, as
`calibrate --select` would have written it had validation picked that setting (rule: runs/crossfit/SHIP-RULE.txt):

    python scripts/crossfit_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3 [--out FILE]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import probe_lines
import torch

from model import checkpoint, validation
from model.calibration import Calibration
from model.scoring import ClipScores

Table = list[tuple[validation.Choice, Calibration]]


def source(stream: str) -> str:
    """The held-out clip a validation stream is made from: its name before the kind ('15-paste0@1' -> '15')."""
    return stream.rsplit("-", 1)[0]


def fold(held: probe_lines.HeldOut, normal: Sequence[ClipScores], anomalous: Sequence[ClipScores], clip: int) -> Table:
    """`validation.choose` fitted on held-out clip `clip` (its normal frames and its busier day), scored on the
    streams made from the other clips; their busier days are only checked, against thresholds fitted without them."""
    name = held.clips[clip].name
    own = [source(f.name) == name for f in held.fakes]
    fit_busy = [anomalous[k] for k, b in enumerate(held.busy) if b and own[k]]
    scored = [k for k in range(len(held.fakes)) if not own[k]]
    return validation.choose(
        [normal[clip], *fit_busy],
        [anomalous[k] for k in scored],
        [held.labels[k] for k in scored],
        benign=[held.benign[k] for k in scored],
        busy=[False] * len(scored),
        drifts=validation.DRIFTS,
    )


def same_setting(a: validation.Choice, b: validation.Choice) -> bool:
    """Whether two rows are one setting (windows, relative flags, λ, drift), whatever they scored."""
    return (a.regions, a.weight, a.drift) == (b.regions, b.weight, b.drift)


def cross_fitted(in_sample: Table, folds: Sequence[Table]) -> Table:
    """Each in-sample row with the folds' mean AUC and mean share above per benign kind (rows align: one grid)."""
    out = []
    for r, (choice, calibration) in enumerate(in_sample):
        rows = [f[r][0] for f in folds]
        if not all(same_setting(choice, c) for c in rows):
            raise ValueError("the folds' grids must align with the in-sample grid")
        above = {kind: float(np.mean([c.above[kind] for c in rows])) for kind in rows[0].above}
        auc = float(np.mean([c.auc for c in rows]))
        out.append(
            (replace(choice, auc=auc, above=above, benign_above_on=max(above.values(), default=0.0)), calibration)
        )
    return out


def line(name: str, choice: validation.Choice, other: validation.Choice, other_name: str) -> str:
    return (
        f"{name}: AUC {100 * choice.auc:.2f} % ({probe_lines.setting(choice)}); worst benign kind above alert_on "
        f"{100 * choice.benign_above_on:.1f} %; {other_name} {100 * other.auc:.2f} % "
        f"(worst benign {100 * other.benign_above_on:.1f} %)"
    )


def main() -> None:
    cli = probe_lines.parser(__doc__)
    cli.add_argument("--out", type=Path, help="write the checkpoint with the cross-fitted pick's calibration")
    args = cli.parse_args()
    held = probe_lines.held_out(args)
    if len(held.clips) < 2:
        raise SystemExit("cross-fitting needs two held-out clips or more")
    with torch.inference_mode():
        normal, anomalous = probe_lines.scored(held)
    in_sample = validation.choose(
        normal, anomalous, held.labels, benign=held.benign, busy=held.busy, drifts=validation.DRIFTS
    )
    cross = cross_fitted(in_sample, [fold(held, normal, anomalous, c) for c in range(len(held.clips))])
    picks = {}
    for name, table, other_name, other in (
        ("in-sample pick", in_sample, "cross-fitted", cross),
        ("cross-fitted pick", cross, "in-sample", in_sample),
    ):
        best, _ = validation.pick(table)
        r = next(r for r, (c, _) in enumerate(table) if c is best)
        picks[name] = r
        print(line(name, best, other[r][0], other_name), flush=True)
    print("cross-fitted, " + probe_lines.calm_psnr(cross).rstrip("; "), flush=True)
    if args.out:
        choice, calibration = in_sample[picks["cross-fitted pick"]]
        ck = checkpoint.load(args.checkpoint)
        provenance = {**ck.provenance, "crossfit_probe": {"setting": probe_lines.setting(choice), "auc": choice.auc}}
        checkpoint.save(args.out, ck.build("cpu"), ck.fps, calibration, provenance)
        print(f"wrote {args.out} ({probe_lines.setting(choice)})")


if __name__ == "__main__":
    main()
