"""Training windows (model.data.WindowDataset): windows played backwards when asked, and only then."""

from __future__ import annotations

import numpy as np
import torch

from model.data import Clip, WindowDataset, window_tensors
from model.network import ModelConfig

CONFIG = ModelConfig(base_width=4, height=16, width=24, memory_size=4)


def ramp(length: int) -> Clip:
    """Frame t is grey level 4 t everywhere (t < 64), so a window's order is plain to see."""
    frames = np.repeat(np.arange(length, dtype=np.uint8)[:, None, None, None] * 4, 16 * 24, axis=1)
    return Clip("ramp", frames.reshape(length, 16, 24, 1), 10.0)


def test_reversed_windows_predict_the_earliest_frame_from_the_later_ones() -> None:
    clip = ramp(20)
    forward, backward = WindowDataset([clip], CONFIG), WindowDataset([clip], CONFIG, reverse=1.0)
    for i in range(len(forward)):
        (xf, yf), (xb, yb) = forward[i], backward[i]
        x, y = window_tensors(clip.frames[i : i + CONFIG.window][::-1].copy(), CONFIG)
        assert torch.equal(xb, x) and torch.equal(yb, y)
        assert torch.equal(yb, xf[:1]) and torch.equal(xb[0], yf[0])  # the target is the window's first frame


def test_the_reversed_share_is_seeded_and_about_what_was_asked() -> None:
    clips = [ramp(60)]
    a, b = WindowDataset(clips, CONFIG, seed=3, reverse=0.5), WindowDataset(clips, CONFIG, seed=3, reverse=0.5)
    backwards = []
    for i in range(len(a)):
        (xa, ya), (xb, yb) = a[i], b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        backwards.append(bool(ya.mean() < xa[0].mean()))  # the target darker than the first input: played back
    assert 0.3 < np.mean(backwards) < 0.7
    plain = WindowDataset(clips, CONFIG, seed=3)
    assert not any(bool(plain[i][1].mean() < plain[i][0][0].mean()) for i in range(len(plain)))
