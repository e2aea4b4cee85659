"""Write a frame-folder dataset at the model's input size as lossless grey PNG, to carry to a GPU machine.

    python scripts/resize_frames.py ../shared/datasets/ped2/training .ped2train

`train` on the copy loads the very arrays it loads from the originals (checked here before it returns):
a resize to the size the frames already have is the identity, and grey PNG reads back as the same grey.
Ped2's training split shrinks from 61 to 40 MiB, under the 64 MiB a device call may carry.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from model.data import load_clips
from model.network import ModelConfig

TRAIN_DEFAULTS = ModelConfig(base_width=16, height=128, width=192)  # the input `train` makes by default


def main(source: Path, target: Path, config: ModelConfig = TRAIN_DEFAULTS) -> None:
    clips = load_clips(source, config, 10)
    for clip in clips:
        folder = target / "frames" / clip.name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(clip.frames):
            cv2.imwrite(str(folder / f"{i:03d}.png"), frame, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    copy = load_clips(target, config, 10)
    if [c.name for c in copy] != [c.name for c in clips] or not all(
        np.array_equal(a.frames, b.frames) for a, b in zip(clips, copy, strict=True)
    ):
        raise SystemExit(f"{target}: the copy does not load as the original does")
    print(f"{target}: {len(clips)} clips, {sum(len(c.frames) for c in clips)} frames, identical when loaded")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
