"""Benign camera changes as training augmentation: whole windows alike, seeded, and only when asked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import Clip, WindowDataset
from model.network import ModelConfig
from model.pseudo import SkippedWindows

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


@pytest.mark.parametrize("windows", [WindowDataset, SkippedWindows])
def test_augment_draws_only_the_changes_asked_for(windows: type) -> None:
    """`changes=("exposure",)` (train --augment-kinds exposure): every window is its original under one gain and
    offset, to the grey level that rounding costs; re-aim, JPEG or sensor noise would leave far larger residuals."""
    clip = walkers(60)
    for i in range(0, len(windows([clip], CONFIG)), 3):
        # fresh datasets for each window: both draw its frames (a skipped window's stride) first, then only one
        # draws a change, so later windows of one dataset would not line up with the other's
        changed, plain = (
            windows([clip], CONFIG, augment=1.0, seed=i, changes=("exposure",)),
            windows([clip], CONFIG, seed=i),
        )
        got = torch.cat(changed[i]).flatten().double() * 127.5 + 127.5  # grey levels
        original = torch.cat(plain[i]).flatten().double() * 127.5 + 127.5
        gain, offset = np.polyfit(original.numpy(), got.numpy(), 1)
        assert 0.89 < gain < 1.11 and -9 < offset < 9
        assert (got - (gain * original + offset)).abs().max() <= 1.5
