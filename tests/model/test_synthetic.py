"""Synthetic anomalies: deterministic from a seed, labelled where the footage was changed."""

from __future__ import annotations

import numpy as np
import pytest

from model import synthetic
from model.data import Clip


def walkers(length: int = 60, seed: int = 0) -> Clip:
    """A grey street with three dark 'people' walking 1 px a frame: motion, a background and objects."""
    rng = np.random.default_rng(seed)
    frames = np.full((length, 48, 72, 1), 150, np.uint8) + rng.integers(0, 6, (length, 48, 72, 1), dtype=np.uint8)
    for t in range(length):
        for k, (y, x0) in enumerate([(10, 5), (25, 30), (35, 50)]):
            x = (x0 + t * (1 if k % 2 == 0 else -1)) % 64
            frames[t, y : y + 8, x : x + 4] = 40
    return Clip("street", frames, 10.0)


def test_same_seed_same_clips_other_seed_other_clips() -> None:
    clip = walkers()
    a, b = synthetic.make([clip], window=5, seed=3), synthetic.make([clip], window=5, seed=3)
    c = synthetic.make([clip], window=5, seed=4)
    assert [x.name for x in a] == [x.name for x in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.frames, y.frames)
        np.testing.assert_array_equal(x.labels, y.labels)
    assert any(not np.array_equal(x.labels, y.labels) or not np.array_equal(x.frames, y.frames) for x, y in zip(a, c))


@pytest.mark.parametrize("kind", ["paste", "blur", "noise"])
def test_in_place_kinds_change_frames_only_inside_the_event(kind: str) -> None:
    clip = walkers()
    fakes = [f for f in synthetic.make([clip], window=5, seed=1) if f.kind == kind]
    assert len(fakes) == 2
    for f in fakes:
        assert f.frames.shape == clip.frames.shape and f.labels.shape == (len(clip.frames),)
        changed = (f.frames != clip.frames).reshape(len(f.frames), -1).any(axis=1)
        assert not changed[~f.labels].any()  # normal frames are the original ones
        assert changed[f.labels].mean() > 0.8  # and the event is visible on (nearly) every labelled frame
        first = int(np.flatnonzero(f.labels)[0])
        assert first >= 2 * 5 + 2  # normal history before the event, as a camera has
        assert f.labels[first:].sum() < len(f.labels) - first  # and normal frames after it


def test_skip_runs_the_clip_faster_inside_the_event_only() -> None:
    clip = walkers(80)
    for f in (f for f in synthetic.make([clip], window=5, seed=2) if f.kind == "skip"):
        assert len(f.frames) < len(clip.frames) == 80  # frames were skipped
        first = int(np.flatnonzero(f.labels)[0])
        np.testing.assert_array_equal(f.frames[:first], clip.frames[:first])
        np.testing.assert_array_equal(f.frames[-5:], clip.frames[-5:])  # it ends where the clip ends, at normal speed


def test_clips_too_short_for_an_event_are_left_out() -> None:
    assert synthetic.make([walkers(synthetic.min_frames(5) - 1)], window=5) == []


def test_benign_copies_are_normal_throughout_and_only_change_exposure() -> None:
    clip = walkers()
    (a,), (b,) = synthetic.benign([clip], seed=5), synthetic.benign([clip], seed=5)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.kind == "exposure" and not a.labels.any() and a.frames.shape == clip.frames.shape
    # a global gain and offset: the frame's ranking of pixels is kept, their level is not
    diff = a.frames.astype(int) - clip.frames.astype(int)
    assert diff.any() and np.abs(diff).max() <= 0.1 * 255 + 8 + 1
