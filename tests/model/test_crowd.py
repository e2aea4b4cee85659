"""A busier day: another clip's walkers laid over a clip, nothing else of the donor, no paste edge."""

from __future__ import annotations

import numpy as np

from model import crowd
from model.data import Clip, WindowDataset
from model.network import ModelConfig

CONFIG = ModelConfig(base_width=4, height=48, width=72, memory_size=4)


def street(length: int, walkers: list[tuple[int, int, int]], seed: int) -> np.ndarray:
    """A grainy grey street, (y, x0, direction) dark 'people' 8x4 px walking 1 px a frame."""
    rng = np.random.default_rng(seed)
    frames = np.full((length, 48, 72, 1), 150, np.uint8) + rng.integers(0, 6, (length, 48, 72, 1), dtype=np.uint8)
    for t in range(length):
        for y, x0, d in walkers:
            x = (x0 + d * t) % 64
            frames[t, y : y + 8, x : x + 4] = 40
    return frames


def test_the_donors_walkers_are_laid_over_the_base_where_they_walk_and_nothing_else_moves() -> None:
    base = street(40, [(5, 5, 1)], seed=0)
    donor = street(30, [(30, 40, -1)], seed=1)
    out = crowd.busier(base, donor)
    assert out.shape == donor.shape and out.dtype == np.uint8  # as long as the shorter clip
    for t in range(30):
        x = (40 - t) % 64
        assert (out[t, 30:38, x : x + 4] == 40).all()  # the donor's walker, at its own place and time
        x = (5 + t) % 64
        assert (out[t, 5:13, x : x + 4] == 40).all()  # the base's walker still there
    # far from the donor's walker, the base's own pixels: the donor's background never comes along
    np.testing.assert_array_equal(out[:, :22], base[:30, :22])


def test_a_static_donor_adds_nothing() -> None:
    base = street(20, [(5, 5, 1)], seed=0)
    empty = np.full_like(base, 152)
    np.testing.assert_array_equal(crowd.busier(base, empty), base)


def test_the_mask_edge_is_soft() -> None:
    donor = street(12, [(20, 30, 1)], seed=1)
    alpha = crowd.foreground(donor, crowd.background(donor))
    values = np.unique(np.round(alpha[6], 3))
    assert alpha.min() == 0 and alpha.max() > 0.99 and len(values) > 4  # between 0 and 1 at the border


def test_crowd_windows_are_seeded_and_only_when_asked() -> None:
    clips = [Clip("a", street(30, [(5, 5, 1)], seed=0), 10.0), Clip("b", street(30, [(30, 40, -1)], seed=1), 10.0)]
    plain = WindowDataset(clips, CONFIG)
    a, b = WindowDataset(clips, CONFIG, seed=2, crowd=1.0), WindowDataset(clips, CONFIG, seed=2, crowd=1.0)
    for i in range(len(plain)):
        (xa, ya), (xb, yb), (xp, _) = a[i], b[i], plain[i]
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        assert not np.array_equal(xa, xp)  # another clip's walker on every window
    assert WindowDataset(clips[:1], CONFIG, crowd=1.0).crowd == 0.0  # one clip: no other day to borrow from


def test_the_pavement_around_a_donors_walker_never_covers_a_base_walker() -> None:
    """Two people passing 3 px apart: both stay whole (the donor's feathered ring would fade the base's one)."""
    base = street(20, [(10, 10, 1)], seed=0)
    donor = street(20, [(10, 17, 1)], seed=1)  # 3 px to the right of the base's walker, same pace
    out = crowd.busier(base, donor)
    for t in range(20):
        x = (10 + t) % 64
        np.testing.assert_array_equal(out[t, 10:18, x : x + 4], base[t, 10:18, x : x + 4])  # base's walker intact
        x = (17 + t) % 64
        assert (out[t, 10:18, x : x + 4] == 40).all()  # and the donor's


def test_crowd_windows_use_the_base_clips_background() -> None:
    """A training window of 5 frames has no background of its own (its median holds its walker): the base
    clip's is used, so the donor walkers' ring spares the base's walker in every crowd window."""
    base = street(30, [(10, 10, 1)], seed=0)
    donor = street(30, [(19, x0, 1) for x0 in range(0, 64, 8)], seed=1)  # a row of walkers just below it
    windows = WindowDataset([Clip("a", base, 10.0), Clip("b", donor, 10.0)], CONFIG, seed=0, crowd=1.0)
    for t in range(5):  # clip a's first windows
        x, _ = windows[t]
        for k in range(CONFIG.past_frames):
            frame = base[t + k, 10:18, :, 0]
            walker = frame == 40
            np.testing.assert_allclose(x[k, 10:18].numpy()[walker], 40 / 127.5 - 1, atol=1e-6)
