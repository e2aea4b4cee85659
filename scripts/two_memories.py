"""Two networks, one score: the prediction error of one checkpoint fused with the memory distance of another.

A validation-only probe (held-out normal clips and their synthetic events, never test footage): the paper's
network predicts well but its memory maps the place; a network trained with `--background --skips 0` has a
memory of what moves but predicts worse. This scores both on the same validation streams, chooses the
setting (windows, λ) the way `train` does, and prints the validation line for each network alone and for
PSNR of the first with the distance of the second, with the fused score's AUC per kind.

    python scripts/two_memories.py PSNR_CHECKPOINT DISTANCE_CHECKPOINT HELD_OUT_CLIP...
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import probe_lines

from model import checkpoint, validation
from model.data import load_clip
from model.scoring import UPDATE_THRESHOLD, ClipScores


def with_distance(prediction: list[ClipScores], memory: list[ClipScores]) -> list[ClipScores]:
    """The first network's PSNR columns with the second's distance columns, stream by stream."""
    return [
        dataclasses.replace(p, distance=m.distance, region_distance=m.region_distance, distance_floor=m.distance_floor)
        for p, m in zip(prediction, memory, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("psnr_checkpoint", type=Path)
    parser.add_argument("distance_checkpoint", type=Path)
    parser.add_argument("clips", type=Path, nargs="+", help="held-out normal clips (frame folders or videos)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    first, second = checkpoint.load(args.psnr_checkpoint), checkpoint.load(args.distance_checkpoint)
    if first.config.window != second.config.window:
        parser.error("the two checkpoints score different windows")
    window = first.config.window
    clips = [load_clip(c, first.config, first.fps) for c in args.clips]
    fakes, labels, benign, busy = probe_lines.streams(clips, window, [args.seed])
    scored = {}
    for name, ck in (("psnr", first), ("distance", second)):
        net, threshold = ck.build(), UPDATE_THRESHOLD[ck.config.variant]
        normal = validation.score_candidates(net, clips, threshold)
        scored[name] = normal, validation.score_candidates(net, [f.as_clip() for f in fakes], threshold)
    scored["both"] = tuple(with_distance(p, d) for p, d in zip(scored["psnr"], scored["distance"], strict=True))
    names = {
        "psnr": args.psnr_checkpoint,
        "distance": args.distance_checkpoint,
        "both": "PSNR of the first, distance of the second",
    }
    for name, (normal, anomalous) in scored.items():
        table = validation.choose(normal, anomalous, labels, benign=benign, busy=busy, drifts=validation.DRIFTS)
        print(probe_lines.chosen(str(names[name]), table, anomalous, fakes, labels), flush=True)


if __name__ == "__main__":
    main()
