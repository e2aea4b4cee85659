"""Synthetic anomalies: deterministic from a seed, labelled where the footage was changed."""

from __future__ import annotations

import itertools

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


@pytest.mark.parametrize("kind", ["paste", "blur", "noise", "vehicle"])
def test_in_place_kinds_change_frames_only_inside_the_event(kind: str) -> None:
    clip = walkers()
    fakes = [f for f in synthetic.make([clip], window=5, seed=1) if f.kind == kind]
    assert len(fakes) == synthetic.PER_KIND
    for f in fakes:
        assert f.frames.shape == clip.frames.shape and f.labels.shape == (len(clip.frames),)
        changed = (f.frames != clip.frames).reshape(len(f.frames), -1).any(axis=1)
        assert not changed[~f.labels].any()  # normal frames are the original ones
        assert changed[f.labels].mean() > 0.8  # and the event is visible on (nearly) every labelled frame
        first = int(np.flatnonzero(f.labels)[0])
        assert first >= 2 * 5 + 2  # normal history before the event, as a camera has
        assert f.labels[first:].sum() < len(f.labels) - first  # and normal frames after it


def test_a_vehicle_is_composited_without_a_cut_edge_and_rides_where_the_clip_moves() -> None:
    clip = walkers(80)
    patch, alpha = synthetic._vehicle(clip.frames, np.random.default_rng(0))
    person, _ = synthetic._object_patch(clip.frames, np.random.default_rng(0))
    assert patch.shape[:2] == alpha.shape[:2] == (48 // 5, 72 // 6) and alpha.shape[2] == 1
    assert patch.size > person.size  # bigger than a pasted walker
    assert alpha.max() == 1 and (alpha[0] == 0).all() and (alpha[-1] == 0).all() and (alpha[:, [0, -1]] == 0).all()
    assert ((alpha > 0) & (alpha < 1)).any()  # a feathered ring between the object and the box's rim
    lane = walkers(80)
    lane.frames[:, :30] = 150  # everyone walks in the lower rows: that is where a vehicle rides
    vehicles = [f for f in synthetic.make([lane], window=5, seed=2) if f.kind == "vehicle"]
    assert [f.name for f in vehicles] == [f"street-vehicle{k}" for k in range(synthetic.PER_KIND)]
    for f in vehicles:
        moved = np.abs(f.frames.astype(int) - lane.frames)[f.labels].max(axis=(0, 2, 3))  # (H,) per row
        assert moved.max() > 0 and not moved[:20].any()  # near the lane, never up on the empty rows
        # where it differs from the clip moves 2-4x a walker's pace (here 1 px a frame), not faster
        columns = [np.flatnonzero((f.frames[t] != lane.frames[t]).any(axis=(0, 2))) for t in np.flatnonzero(f.labels)]
        step = np.median([abs(b.mean() - a.mean()) for a, b in itertools.pairwise(columns) if len(a) and len(b)])
        assert 0.5 <= step <= 72 * synthetic.VEHICLE_SPEED[1] + 1, step


def test_skip_runs_the_clip_faster_inside_the_event_only() -> None:
    clip = walkers(80)
    for f in (f for f in synthetic.make([clip], window=5, seed=2) if f.kind == "skip"):
        assert len(f.frames) < len(clip.frames) == 80  # frames were skipped
        first = int(np.flatnonzero(f.labels)[0])
        np.testing.assert_array_equal(f.frames[:first], clip.frames[:first])
        np.testing.assert_array_equal(f.frames[-5:], clip.frames[-5:])  # it ends where the clip ends, at normal speed


def test_rush_lays_the_next_clips_walkers_over_and_runs_them_inside_the_event_only() -> None:
    from model import crowd

    a, b = walkers(80, seed=0), Clip("other", walkers(90, seed=1).frames[:, ::-1].copy(), 10.0)  # other lanes
    rush = [f for f in synthetic.make([a, b], window=5, seed=4) if f.kind == "rush"]
    assert [f.name for f in rush] == [f"{c}-rush{k}" for c in ("street", "other") for k in range(synthetic.PER_KIND)]
    assert [f.kind for f in synthetic.make([a], window=5) if f.kind == "rush"] == []  # one clip: no donor
    for f in (f for f in rush if f.name.startswith("street")):
        first, last = np.flatnonzero(f.labels)[[0, -1]]
        busier = crowd.busier(a.frames, b.frames)  # the same walkers at their own pace
        np.testing.assert_array_equal(f.frames[:first], busier[:first])  # before the event: a busier day
        assert not np.array_equal(f.frames[first + 1 : last + 1], busier[first + 1 : last + 1])  # then they run
        assert len(f.frames) > last + 1 and not f.labels[last + 1 :].any()  # and normal frames after it
    again = [f for f in synthetic.make([a, b], window=5, seed=4) if f.kind == "rush"]
    assert all(np.array_equal(x.frames, y.frames) and np.array_equal(x.labels, y.labels) for x, y in zip(rush, again))


def test_a_mask_labels_normal_the_event_frames_whose_change_it_hides() -> None:
    """With a camera's mask the events are the same, drawn from the same seed; a labelled frame stays anomalous
    only if at least half of what the event changed (against the clip without it) lies in the watched part."""
    from model import crowd

    a, b = walkers(80, seed=0), Clip("other", walkers(90, seed=1).frames[:, ::-1].copy(), 10.0)
    watched = np.zeros((48, 72), np.float32)
    watched[:, 36:] = 1  # the right half watched
    plain = synthetic.make([a, b], window=5, seed=2, per_kind=3)
    masked = synthetic.make([a, b], window=5, seed=2, per_kind=3, watched=watched)
    assert [f.name for f in masked] == [f.name for f in plain]
    kept = dropped = 0
    for p, m in zip(plain, masked):
        np.testing.assert_array_equal(m.frames, p.frames)  # the same events
        clip, donor = (a, b) if p.name.startswith("street") else (b, a)
        without = crowd.busier(clip.frames, donor.frames[: len(clip.frames)]) if p.kind == "rush" else clip.frames
        for t in np.flatnonzero(p.labels):  # plain loop: the event's change left and right of the mask's edge
            change = np.abs(p.frames[t].astype(int) - without[t].astype(int))
            expected = change[:, 36:].sum() >= 0.5 * change.sum()
            assert m.labels[t] == expected, (p.name, t)
            kept, dropped = kept + expected, dropped + (not expected)
        assert not m.labels[~p.labels].any()  # never a normal frame made anomalous
    assert kept and dropped  # the mask hid some event frames and left others
    everything = synthetic.make([a, b], window=5, seed=2, per_kind=3, watched=np.ones((48, 72), np.float32))
    assert all(np.array_equal(x.labels, y.labels) for x, y in zip(everything, plain))  # no mask: labels as drawn


def test_clips_too_short_for_an_event_are_left_out() -> None:
    assert synthetic.make([walkers(synthetic.min_frames(5) - 1)], window=5) == []


def test_benign_copies_are_normal_throughout_seeded_and_move_nothing() -> None:
    clip = walkers()
    a, b = synthetic.benign([clip], seed=5), synthetic.benign([clip], seed=5)
    assert [x.kind for x in a] == list(synthetic.BENIGN)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.frames, y.frames)
        assert not x.labels.any() and x.frames.dtype == np.uint8 and len(x.labels) == len(x.frames)
        if x.kind == "crowd":  # one clip: its second half's walkers over its first half
            assert x.frames.shape == (len(clip.frames) // 2, *clip.frames.shape[1:])
            continue
        assert x.frames.shape == clip.frames.shape
        assert not np.array_equal(x.frames, clip.frames)
        # the scene's own motion is kept: frame-to-frame change is the original's, give or take the change itself
        moved = np.abs(np.diff(x.frames.astype(int), axis=0)).mean()
        original = np.abs(np.diff(clip.frames.astype(int), axis=0)).mean()
        assert moved <= original + 8, x.kind
    exposure, reframe, compression, sensor, _ = a
    # exposure: a global gain and offset
    diff = exposure.frames.astype(int) - clip.frames.astype(int)
    assert np.abs(diff).max() <= 0.1 * 255 + 8 + 1
    # reframe: one fixed shift/zoom for the whole clip, so the first frame's content reappears a few pixels off
    best = min(
        np.abs(np.roll(reframe.frames[0].astype(int), (dy, dx), axis=(0, 1)) - clip.frames[0])[8:-8, 8:-8].mean()
        for dy in range(-6, 7)
        for dx in range(-6, 7)
    )
    assert best < np.abs(reframe.frames[0].astype(int) - clip.frames[0]).mean()
    # compression and sensor noise: small changes everywhere, no large ones
    for x in (compression, sensor):
        assert np.abs(x.frames.astype(int) - clip.frames.astype(int)).mean() < 6, x.kind


def test_the_crowd_copy_of_several_clips_borrows_the_next_clips_walkers() -> None:
    a, b = walkers(60, seed=0), Clip("other", walkers(50, seed=1).frames[:, :, ::-1].copy(), 10.0)  # walk the other way
    busier = {x.name: x for x in synthetic.benign([a, b]) if x.kind == "crowd"}
    assert set(busier) == {"street-crowd", "other-crowd"}
    street = busier["street-crowd"].frames
    assert street.shape == b.frames.shape  # as long as the shorter of the two
    dark = (street < 80).reshape(len(street), -1).sum(axis=1)
    alone = (a.frames[:50] < 80).reshape(50, -1).sum(axis=1)
    assert (dark > alone).all()  # more people on every frame


def test_an_unknown_benign_kind_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown benign kind"):
        synthetic.camera_change(walkers().frames, "rain", np.random.default_rng(0))


def test_kinds_from_the_command_line() -> None:
    assert synthetic.parse_kinds("all") == synthetic.KINDS
    assert synthetic.parse_kinds("rush, skip") == ("skip", "rush")  # in KINDS order
    assert synthetic.parse_kinds("vehicle,all") == (*synthetic.KINDS, "vehicle")  # an opt-in kind beside the defaults
    assert "vehicle" not in synthetic.parse_kinds("all")
    for bad in ("bikes", "skip,bikes", " , "):
        with pytest.raises(ValueError, match="anomaly kinds must be"):
            synthetic.parse_kinds(bad)


def test_camera_changes_from_the_command_line() -> None:
    assert synthetic.parse_changes("all") == ("exposure", "reframe", "compression", "sensor")
    assert synthetic.parse_changes("sensor, exposure,reframe") == ("exposure", "reframe", "sensor")  # in BENIGN order
    for bad in ("crowd", "blur", "exposure,rain", ""):  # a crowd is a busier day, not a camera change
        with pytest.raises(ValueError, match="camera changes must be"):
            synthetic.parse_changes(bad)
