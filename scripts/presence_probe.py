"""The worst error window per unit of what it holds: a crowd's windows hold more people, and more error.

A validation-only probe (held-out normal clips and their synthetic events, never test footage). The shipped
file's false alarms on Ped2's test camera are busy normal footage (`evaluate` prints them by clip). Per window,
r = mean model error / (f + eps), f the window's share of foreground pixels in the target frame (more than
model.crowd's 15 grey levels from the held-out clips' median frame, the empty scene); P is r as PSNR of the
window with the largest r. Unlike the copy error of motion_gain_probe.py, presence does not rise with speed, so
a stream played too fast keeps its error; a large eps is today's absolute window (the same ranking).

Every setting is chosen as `train` does (windows, λ, drift, the calm check), among the landed options, each
eps alone, and all of them, on the same pooled draws (rule: runs/fgshare/SHIP-RULE.txt):

    python scripts/presence_probe.py CHECKPOINT HELD_OUT_CLIP... --draws 3 [--test FOOTAGE --out DIR]

With `--test`, the labelled footage is then scored with the setting validation chose over every option, fitted
as it was (presence against the held-out clips' empty scene), and `evaluate`'s streaming figures and alert report
for it are printed and written to DIR/report.json: the one test look the rule allows, not a way to choose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import motion_gain_probe as gain
import probe_lines
import torch
from torch import Tensor

from model import validation
from model.crowd import THRESHOLD
from model.data import Clip, empty_scene
from model.scoring import ClipScores, score_clips

EPSILONS = (0.05, 0.2, 1.0)  # share of foreground pixels at which a window's ratio is half its plain one


def presence(empty: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """(C, H, W) empty scene in [-1, 1] -> a map of (B, T*C, H, W) inputs and (B, C, H, W) target to (B, H, W):
    1 where the target frame holds something, 0 on the empty scene."""

    def foreground(x: Tensor, target: Tensor) -> Tensor:
        return ((target.float() - empty.to(target.device)).abs().mean(dim=1) > THRESHOLD / 127.5).float()

    return foreground


def error(side: int) -> str:
    """A probe window side in words: the side and its eps."""
    variant, side = divmod(side, gain.CODE)
    return f"{side} (per unit of presence, eps {EPSILONS[variant - 1]})" if variant else f"{side}"


def main() -> None:
    args = probe_lines.parser(__doc__, Path("runs/fgshare/look")).parse_args()
    held = probe_lines.held_out(args)
    shape = (held.net.config.height, held.net.config.width)
    empty = empty_scene(held.clips)
    variants = [f"presence with eps {e}" for e in EPSILONS]
    table, windows = probe_lines.coded_variants(
        held, variants, gain.CODE, gain.gains(shape, presence(empty), EPSILONS), error
    )
    if args.test is None:
        return

    def score(clips: list[Clip]) -> list[ClipScores]:
        with gain.gains(shape, presence(empty), EPSILONS), torch.inference_mode():
            sides = (windows["error"], windows["distance"])
            return score_clips(held.net, clips, held.update_threshold, 16, "cpu", True, *sides)

    probe_lines.look_at_test(held, validation.pick(table)[1], args.test, args.out, score, windows, error)


if __name__ == "__main__":
    main()
