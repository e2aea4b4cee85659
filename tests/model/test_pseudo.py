"""Skipped-frame pseudo anomalies: the windows they make and the speed loss, against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import pseudo
from model.data import Clip, window_tensors
from model.network import ModelConfig

CONFIG = ModelConfig(base_width=2, height=8, width=8)


def counting_clip(length: int) -> Clip:
    """Frame t is the grey level 2t everywhere: a window's frames say which frames it took."""
    frames = np.repeat(2 * np.arange(length, dtype=np.uint8), 64).reshape(length, 8, 8, 1)
    return Clip("count", frames, 10.0)


def taken(x: torch.Tensor) -> list[int]:
    """Frame indices back from a [-1, 1] tensor of one window (its frames' grey levels / 2)."""
    return [round(float((f.mean() + 1) * 127.5) / 2) for f in x]


@pytest.mark.parametrize("past", [4, 8])
def test_skipped_windows_take_every_stride_th_frame_then_the_next_one_and_are_seeded(past: int) -> None:
    """Inputs every stride-th frame; the target the frame right after the last input (what normal speed shows)."""
    config = ModelConfig(base_width=2, height=8, width=8, past_frames=past)
    clip = counting_clip(60)
    windows = pseudo.SkippedWindows([clip], config, seed=3)
    assert len(windows) == 60 - past * max(pseudo.STRIDES)  # every start whose widest window fits
    seen = set()
    for i in range(len(windows)):
        inputs, target = windows[i]
        frames = taken(torch.cat([inputs, target]))
        stride = frames[1] - frames[0]
        last = frames[0] + stride * (past - 1)
        assert stride in pseudo.STRIDES and frames == [*(frames[0] + stride * k for k in range(past)), last + 1]
        seen.add(stride)
    assert seen == set(pseudo.STRIDES)
    first, again = (pseudo.SkippedWindows([clip], config, seed=3) for _ in range(2))
    assert all(torch.equal(first[i][0], again[i][0]) for i in range(len(first)))  # the same seed, the same strides


def test_window_tensors_give_the_network_every_step_th_frame_of_a_window() -> None:
    """frame_step 2: a 9-frame window, inputs t-8, t-6, t-4, t-2 and the target t; step 1 the paper's 5 frames.

    Eight past frames (T = 8) one frame apart also make a 9-frame window: all of it, the target one frame ahead."""
    clip = counting_clip(12)
    spaced = ModelConfig(base_width=2, height=8, width=8, frame_step=2)
    assert (CONFIG.window, spaced.window) == (5, 9)
    inputs, target = window_tensors(clip.frames[3 : 3 + spaced.window], spaced)
    assert taken(torch.cat([inputs, target])) == [3, 5, 7, 9, 11]
    inputs, target = window_tensors(clip.frames[3 : 3 + CONFIG.window], CONFIG)
    assert taken(torch.cat([inputs, target])) == [3, 4, 5, 6, 7]
    longer = ModelConfig(base_width=2, height=8, width=8, past_frames=8)  # a longer past: 8 inputs, one frame ahead
    inputs, target = window_tensors(clip.frames[3 : 3 + longer.window], longer)
    assert longer.window == 9 and taken(torch.cat([inputs, target])) == [*range(3, 11), 11]


def test_skipped_windows_of_a_frame_step_play_its_spacing_too_fast() -> None:
    """frame_step 2: inputs stride x 2 frames apart, the target 2 frames after the last input."""
    spaced = ModelConfig(base_width=2, height=8, width=8, frame_step=2)
    windows = pseudo.SkippedWindows([counting_clip(60)], spaced, seed=1)
    strides = set()
    for i in range(len(windows)):
        frames = taken(torch.cat(windows[i]))
        stride = (frames[1] - frames[0]) // 2
        assert stride in pseudo.STRIDES and frames == [*(frames[0] + 2 * stride * k for k in range(4)), frames[3] + 2]
        strides.add(stride)
    assert strides == set(pseudo.STRIDES)


def test_stray_is_the_mean_of_the_farthest_positions_against_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    queries = F.normalize(torch.randn(3, 40, 6, generator=g), dim=-1)
    items = F.normalize(torch.randn(5, 6, generator=g), dim=-1)
    expected = []
    for q in queries:
        d = sorted((min(float(((p - m) ** 2).sum()) for m in items) for p in q), reverse=True)
        expected.append(np.mean(d[:2]))  # 5 % of 40 positions
    torch.testing.assert_close(pseudo.stray(queries, items), torch.tensor(expected, dtype=torch.float32))


def test_speed_loss_pushes_only_the_skipped_windows_until_the_margin() -> None:
    items = torch.eye(4, 8)
    near = F.normalize(items[[0, 1, 2, 3] * 10] + 0.01, dim=-1).unsqueeze(0)  # (1, 40, 8) queries on the items
    far = F.normalize(items[[0] * 40] + torch.eye(8)[[7] * 40], dim=-1).unsqueeze(0)  # 2 - 2 cos = 0.59 off
    assert pseudo.speed_loss(far, near, items) == 0  # strays more than the margin: nothing to learn
    pushed, normal = near.clone().requires_grad_(), near.clone().requires_grad_()
    loss = pseudo.speed_loss(pushed, normal, items)
    assert loss.item() == pytest.approx(pseudo.MARGIN, abs=1e-3)  # the same queries on both sides: the whole margin
    loss.backward()
    assert pushed.grad.abs().sum() > 0 and normal.grad is None  # the normal side is a reference, not a target
