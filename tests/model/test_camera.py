"""Benign camera changes as training augmentation: whole windows alike, seeded, and only when asked."""

from __future__ import annotations

import numpy as np
import torch

from model.data import Clip, WindowDataset
from model.network import ModelConfig

CONFIG = ModelConfig(base_width=8, height=48, width=72, memory_size=4)


def walkers(length: int) -> Clip:
    """A noisy grey street with a dark 'person' walking 1 px a frame."""
    rng = np.random.default_rng(0)
    frames = np.full((length, 48, 72, 1), 150, np.uint8) + rng.integers(0, 6, (length, 48, 72, 1), dtype=np.uint8)
    for t in range(length):
        frames[t, 20:28, t % 64 : t % 64 + 4] = 40
    return Clip("street", frames, 10.0)


def test_no_augmentation_gives_the_frames_themselves() -> None:
    clip = walkers(20)
    inputs, target = WindowDataset([clip], CONFIG)[3]
    expected = torch.from_numpy(clip.frames[7].astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    torch.testing.assert_close(target, expected)
    assert inputs.shape == (4, 48, 72)


def test_augmented_windows_are_seeded_and_change_every_frame_alike() -> None:
    clip = walkers(40)
    a, b = WindowDataset([clip], CONFIG, augment=1.0, seed=3), WindowDataset([clip], CONFIG, augment=1.0, seed=3)
    plain = WindowDataset([clip], CONFIG)
    changed = 0
    for i in range(len(plain)):
        (xa, ya), (xb, yb), (x, y) = a[i], b[i], plain[i]
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
        window, original = torch.cat([xa, ya]), torch.cat([x, y])
        if not torch.equal(window, original):
            changed += 1
            # one change for the whole window: every frame differs from its original, not only some
            assert all(not torch.equal(window[t], original[t]) for t in range(len(window)))
    assert changed == len(plain)


def test_augment_share_is_respected() -> None:
    clip = walkers(200)
    half, plain = WindowDataset([clip], CONFIG, augment=0.5, seed=1), WindowDataset([clip], CONFIG)
    share = np.mean([not torch.equal(half[i][1], plain[i][1]) for i in range(len(plain))])
    assert 0.35 < share < 0.65
