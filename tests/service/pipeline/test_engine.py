"""The engine batches lanes of one model together, keeps one memory copy per lane, and computes
the same numbers as score_clips (what `evaluate` uses) for the same frames."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import torch
from support import reference_scores

from model.data import Clip, preprocess
from service.capture.buffer import Frame
from service.pipeline.engine import Engine, Scored
from service.pipeline.host import ModelHost


class Collect:
    def __init__(self) -> None:
        self.rows: list[Scored] = []

    def on_scored(self, s: Scored):
        self.rows.append(s)
        return [("t", {"frame": s.frame.index})]


def test_engine_batches_across_lanes_with_separate_memories(models_dir, clip_frames) -> None:
    torch.set_num_threads(1)
    host = ModelHost.load_dir(models_dir, torch.device("cpu"))
    model = host.get(None)
    batches: list[int] = []
    published: list[int] = []
    engine = Engine(8, 0.05, lambda msgs: published.append(len(msgs)), lambda m, n, s: batches.append(n))
    engine.start()
    try:
        owners = [Collect(), Collect()]
        # lane 1 sees the clip reversed: if memories leaked between lanes, neither would match its reference
        sequences = [clip_frames, clip_frames[::-1]]
        lanes = [engine.add_lane(f"l{i}", model, 4, o) for i, o in enumerate(owners)]

        def feed(lane, frames) -> None:
            for i, f in enumerate(frames):
                assert lane.buffer.put(Frame(i, 0, time.time(), preprocess(f, model.config)), block=True, timeout=30)

        threads = [threading.Thread(target=feed, args=(lane, seq)) for lane, seq in zip(lanes, sequences)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        deadline = time.monotonic() + 60
        expected = len(clip_frames) - model.config.window + 1
        while any(len(o.rows) < expected for o in owners) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.stop()
    assert max(batches) == 2, "windows of the two lanes were never batched together"
    assert sum(published) == 2 * expected
    for owner, seq in zip(owners, sequences):
        ref = reference_scores(models_dir, seq)
        assert [r.frame.index for r in owner.rows] == sorted(ref)
        got = np.array([[r.score, r.psnr, r.distance] for r in owner.rows])
        want = np.array([ref[r.frame.index] for r in owner.rows])
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    # lanes work on copies: the hosted model's memory is untouched
    assert torch.equal(model.items, model.net.items)
    assert all(lane.items.data_ptr() != model.items.data_ptr() for lane in lanes)


def test_engine_restarts_the_window_after_dropped_frames(models_dir, clip_frames) -> None:
    """Frames dropped from a full buffer leave a hole: no window may span it, so the window refills."""
    torch.set_num_threads(1)
    model = ModelHost.load_dir(models_dir, torch.device("cpu")).get(None)
    window = model.config.window
    engine = Engine(8, 0.0, lambda msgs: None)
    owner = Collect()
    lane = engine.add_lane("l", model, 3, owner)
    frames = [preprocess(f, model.config) for f in clip_frames[: window + 6]]
    for i in range(window):  # a full window, scored
        lane.buffer.put(Frame(i, 0, time.time(), frames[i]))
        engine.step([lane])
    for i in range(window, window + 6):  # 6 frames into a 3-frame buffer: 3 dropped
        lane.buffer.put(Frame(i, 0, time.time(), frames[i]))
    while len(lane.buffer):
        engine.step([lane])
    assert lane.buffer.dropped == 3 and lane.gaps == 1
    # frame `window - 1` was scored; after the hole, frames window+3.. only refill the window
    assert [r.frame.index for r in owner.rows] == [window - 1]


def test_each_lane_scores_with_its_own_calibration(models_dir, clip_frames) -> None:
    """Two lanes of one model see the same frames in one batch: same measures, and each score is its own
    lane's calibration of them (a stream calibrated on its camera next to one using the checkpoint's). Scores
    use the region measures, and the box is the window of whichever term counted more."""
    torch.set_num_threads(1)
    model = ModelHost.load_dir(models_dir, torch.device("cpu")).get(None)
    own = dataclasses.replace(model.calibration, psnr_mean=model.calibration.psnr_mean - 3, distance_std=0.5)
    batches: list[int] = []
    engine = Engine(8, 0.0, lambda msgs: None, lambda m, n, s: batches.append(n))
    owners = [Collect(), Collect()]
    lanes = [engine.add_lane("model", model, 4, owners[0]), engine.add_lane("own", model, 4, owners[1], own)]
    assert lanes[0].calibration is model.calibration and lanes[1].calibration is own
    for i, f in enumerate(clip_frames[:12]):
        for lane in lanes:
            lane.buffer.put(Frame(i, 0, time.time(), preprocess(f, model.config)))
        engine.step(lanes)
    assert batches == [2] * (12 - model.config.window + 1)
    (a, b) = (
        np.array([[r.region_psnr, r.region_distance, r.score, r.psnr, r.distance] for r in o.rows]) for o in owners
    )
    np.testing.assert_array_equal(a[:, [0, 1, 3, 4]], b[:, [0, 1, 3, 4]])
    np.testing.assert_allclose(a[:, 2], model.calibration.stream_scores(a[:, 0], a[:, 1]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b[:, 2], own.stream_scores(b[:, 0], b[:, 1]), rtol=0, atol=1e-12)
    assert np.all(np.abs(a[:, 2] - b[:, 2]) > 1e-3)
    c = model.config
    for rows, cal in ((owners[0].rows, model.calibration), (owners[1].rows, own)):
        for r in rows:
            x, y, w, h = r.box
            assert 0 <= x < x + w <= 1 + 1e-9 and 0 <= y < y + h <= 1 + 1e-9
            by_distance = bool(cal.distance_dominates(np.array([r.region_psnr]), np.array([r.region_distance]))[0])
            side = cal.distance_window * 8 if by_distance else cal.error_window
            if side and side < min(c.height, c.width):
                assert (round(w * c.width), round(h * c.height)) == (side, side)


def test_a_lane_that_follows_drift_scores_each_frame_against_its_own_past(models_dir, clip_frames) -> None:
    """With drift, each lane keeps its own stream's past measures: its scores are evaluate's `stream_scores` of
    that one stream (frame by frame here, in one pass there), and a lane beside it without drift is untouched."""
    torch.set_num_threads(1)
    model = ModelHost.load_dir(models_dir, torch.device("cpu")).get(None)
    fixed = dataclasses.replace(model.calibration, drift_frames=0, drift_cap=0.0)
    drift = dataclasses.replace(model.calibration, drift_frames=12, drift_cap=1.0)
    engine = Engine(8, 0.0, lambda msgs: None)
    owners = [Collect(), Collect()]
    lanes = [engine.add_lane("fixed", model, 4, owners[0], fixed), engine.add_lane("drift", model, 4, owners[1], drift)]
    for i, f in enumerate(clip_frames):
        for lane in lanes:
            lane.buffer.put(Frame(i, 0, time.time(), preprocess(f, model.config)))
        engine.step(lanes)
    (a, b) = (np.array([[r.region_psnr, r.region_distance, r.score] for r in o.rows]) for o in owners)
    assert len(b) > 12  # past the warm-up
    np.testing.assert_allclose(a[:, 2], fixed.score(a[:, 0], a[:, 1]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b[:, 2], drift.stream_scores(b[:, 0], b[:, 1]), rtol=0, atol=1e-12)
    assert np.all(a[:10, 2] == b[:10, 2])  # the warm-up compares with the held-out means, as without drift
    assert np.any(np.abs(a[10:, 2] - b[10:, 2]) > 1e-3)


def test_a_relative_error_calibration_scores_as_evaluate_does(models_dir, clip_frames) -> None:
    """A model whose calibration takes P relative to the frame's median error window: the engine sends that
    measure and its score, the very ones score_clips and the calibration give `evaluate` for the same frames."""
    from model.scoring import UPDATE_THRESHOLD, score_clips

    torch.set_num_threads(1)
    hosted = ModelHost.load_dir(models_dir, torch.device("cpu")).get(None)
    where = hosted.calibration.regions
    relative = dataclasses.replace(hosted.calibration, error_window=where.error_window or 12, error_relative=True)
    model = dataclasses.replace(hosted, calibration=relative)
    engine = Engine(8, 0.0, lambda msgs: None)
    owner = Collect()
    lane = engine.add_lane("l", model, 4, owner)
    frames = np.stack([preprocess(f, model.config) for f in clip_frames[:16]])
    for i, frame in enumerate(frames):
        lane.buffer.put(Frame(i, 0, time.time(), frame))
        engine.step([lane])
    (scored,) = score_clips(
        model.net, [Clip("ref", frames, 10.0)], UPDATE_THRESHOLD[model.config.variant],
        error_windows=(relative.error_window,), distance_windows=(relative.distance_window,),
    )  # fmt: skip
    got = np.array([[r.region_psnr, r.region_distance, r.score] for r in owner.rows])
    p, d = relative.measures(scored)
    np.testing.assert_allclose(got, np.stack([p, d, relative.clip_scores(scored)], 1), atol=1e-3, rtol=0)
    assert np.all(got[:, 0] <= 1e-4)  # the worst window errs at least as much as the median one
    absolute = scored.measures(0, 0, relative.distance_relative)[0]
    assert np.all(np.abs(got[:, 0] - absolute) > 1.0)  # not the plain worst window's PSNR


def test_a_model_whose_inputs_are_frames_apart_scores_every_frame_as_evaluate_does(
    models_dir, clip_frames, tmp_path
) -> None:
    """frame_step 2: the engine's window holds 4 x 2 + 1 frames, the first score comes at frame 8, and every frame
    after it is scored from frames t-8, t-6, t-4, t-2, as score_clips (evaluate) scores it."""
    from model import checkpoint
    from model.network import MemoryAE
    from model.scoring import UPDATE_THRESHOLD, score_clips

    torch.set_num_threads(1)
    tiny = ModelHost.load_dir(models_dir, torch.device("cpu")).get(None)
    torch.manual_seed(0)
    config = dataclasses.replace(tiny.config, frame_step=2)
    (tmp_path / "step").mkdir()
    checkpoint.save(tmp_path / "step" / "step.safetensors", MemoryAE(config), 10.0, tiny.calibration, {})
    model = ModelHost.load_dir(tmp_path / "step", torch.device("cpu")).get(None)
    assert model.config.window == 9
    engine = Engine(8, 0.0, lambda msgs: None)
    owner = Collect()
    lane = engine.add_lane("l", model, 4, owner)
    frames = np.stack([preprocess(f, config) for f in clip_frames[:20]])
    for i, frame in enumerate(frames):
        lane.buffer.put(Frame(i, 0, time.time(), frame))
        engine.step([lane])
    assert [r.frame.index for r in owner.rows] == list(range(8, 20))
    (scored,) = score_clips(model.net, [Clip("ref", frames, 10.0)], UPDATE_THRESHOLD[config.variant],
                            error_windows=(model.calibration.regions.error_window,),
                            distance_windows=(model.calibration.regions.distance_window,))  # fmt: skip
    got = np.array([[r.psnr, r.score] for r in owner.rows])
    np.testing.assert_allclose(got, np.stack([scored.psnr, model.calibration.clip_scores(scored)], 1), atol=1e-3)
