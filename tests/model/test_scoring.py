"""PSNR, both normalizers, fusion, and the per-stream scoring path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model import memory
from model.calibration import Calibration, fuse, minmax, paper_scores
from model.data import Clip
from model.network import MemoryAE, ModelConfig
from model.regions import Regions
from model.scoring import psnr, score_clips, score_step, weighted_error

SMALL = ModelConfig(base_width=2, height=16, width=24, memory_size=4)


def test_psnr_uses_unit_pixel_range() -> None:
    target = torch.zeros(1, 1, 4, 4)
    pred = torch.full((1, 1, 4, 4), 0.2)  # 0.1 in [0, 1] pixels: MSE 0.01 -> 20 dB
    assert psnr(pred, target).item() == pytest.approx(20.0, rel=1e-5)
    assert psnr(target, target).item() == pytest.approx(100.0)  # capped, not inf


def test_weighted_error_is_zero_for_a_perfect_frame_and_grows_with_error() -> None:
    target = torch.zeros(2, 1, 4, 4)
    pred = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5)])
    err = weighted_error(pred, target)
    assert err[0].item() == 0.0
    assert err[1].item() == pytest.approx(0.25**2)  # uniform error: weighted mean = the error


def test_paper_normalization_is_per_clip_minmax() -> None:
    p = np.array([30.0, 25.0, 20.0])
    d = np.array([0.1, 0.2, 0.4])
    np.testing.assert_allclose(minmax(p), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(paper_scores(p, d, 0.6), 0.6 * np.array([0.0, 0.5, 1.0]) + 0.4 * np.array([0, 1 / 3, 1]))
    assert np.all(minmax(np.array([3.0, 3.0])) == 0)


def test_fuse_weights() -> None:
    assert fuse(np.array(1.0), np.array(0.0), 0.6) == 0.0
    assert fuse(np.array(0.0), np.array(1.0), 0.6) == pytest.approx(1.0)


def test_streaming_calibration_is_causal_monotone_and_bounded() -> None:
    rng = np.random.default_rng(0)
    p, d = rng.normal(30, 1.5, 500), rng.gamma(2.0, 0.01, 500)
    cal = Calibration.fit(p, d, 0.6)
    assert cal.psnr_mean == pytest.approx(p.mean()) and cal.distance_std == pytest.approx(d.std())
    # the normal frames' alert quantiles
    normal = cal.score(p, d)
    assert np.mean(normal > cal.alert_on) == pytest.approx(0.01, abs=0.003)
    assert cal.alert_off < cal.alert_on
    # lower PSNR or larger distance -> higher score, always inside (0, 1), no ties far out
    scores = cal.score(np.array([40.0, 30.0, 20.0, 10.0]), np.full(4, d.mean()))
    assert np.all(np.diff(scores) > 0) and np.all((scores > 0) & (scores < 1))
    assert cal.score(30.0, 0.5) > cal.score(30.0, 0.01)
    # a frame's score does not depend on what came before it
    assert cal.score(p[:1], d[:1])[0] == pytest.approx(normal[0])
    assert Calibration(**cal.to_dict()) == cal


def test_score_step_updates_only_memories_of_normal_looking_frames() -> None:
    torch.manual_seed(0)
    model = MemoryAE(SMALL).eval()
    x = torch.rand(2, 4, 16, 24) * 2 - 1
    target = torch.rand(2, 1, 16, 24) * 2 - 1
    items = model.items.expand(2, -1, -1).clone()
    with torch.no_grad():
        err = weighted_error(model(x, items).frame, target)
    threshold = float(err.mean())  # one sample below, one above
    step = score_step(model, x, target, items, threshold)
    learned = (err < threshold).tolist()
    assert learned.count(True) == 1
    for b in range(2):
        assert torch.equal(step.items[b], items[b]) != learned[b]
    assert step.psnr.shape == step.distance.shape == (2,)


def test_score_clips_matches_frame_by_frame_and_keeps_memories_apart() -> None:
    torch.manual_seed(0)
    model = MemoryAE(SMALL).eval()
    rng = np.random.default_rng(1)
    clips = [Clip(str(i), rng.integers(0, 255, (n, 16, 24, 1), dtype=np.uint8), 10.0) for i, n in enumerate([9, 6, 12])]
    lockstep = score_clips(model, clips, update_threshold=math.inf, batch_size=2)
    for clip, scored in zip(clips, lockstep):
        items = model.items.unsqueeze(0).clone()
        assert scored.first_frame == 4 and len(scored.psnr) == len(clip.frames) - 4
        for t in range(len(clip.frames) - 4):
            x = torch.from_numpy(clip.frames[t : t + 5]).float().div(127.5).sub(1).permute(3, 0, 1, 2).flatten(0, 1)
            step = score_step(model, x[None, :4], x[None, 4:], items, math.inf)
            items = step.items
            assert scored.psnr[t] == pytest.approx(step.psnr.item(), rel=1e-5)
            assert scored.distance[t] == pytest.approx(step.distance.item(), rel=1e-4, abs=1e-7)


def test_feature_distance_grows_for_queries_far_from_memory() -> None:
    items = torch.eye(4).unsqueeze(0)
    near = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.05, 0, 0]]]), dim=-1)
    far = torch.nn.functional.normalize(torch.tensor([[[1.0, 1.0, 1.0, 1.0]]]), dim=-1)
    assert memory.feature_distance(far, items) > memory.feature_distance(near, items)


def test_score_step_region_measures_come_from_the_same_error_map_and_matching() -> None:
    """Worst-window PSNR and distance, the distance floor and the boxes, against the maps computed by hand."""
    torch.manual_seed(0)
    model = MemoryAE(SMALL).eval()
    x, target = torch.rand(3, 4, 16, 24) * 2 - 1, torch.rand(3, 1, 16, 24) * 2 - 1
    items = model.items.expand(3, -1, -1).clone()
    step = score_step(model, x, target, items, 0.0, error_windows=(0, 8), distance_windows=(0, 1))
    out = model(x, items)
    error = ((out.frame - target) / 2).square()[:, 0]  # (3, 16, 24)
    torch.testing.assert_close(step.region_psnr[:, 0], step.psnr)  # window 0: the whole frame
    worst = torch.nn.functional.avg_pool2d(error[:, None], 8, 4).flatten(1).amax(1)
    torch.testing.assert_close(step.region_psnr[:, 1], 10 * torch.log10(1 / worst))
    median = torch.nn.functional.avg_pool2d(error[:, None], 8, 4).flatten(1).median(1).values
    torch.testing.assert_close(step.error_floor[:, 1], 10 * torch.log10(1 / median))
    torch.testing.assert_close(step.error_floor[:, 0], step.psnr)  # the whole frame is its own median
    queries = out.queries
    nearest = memory.nearest_item(queries, items)
    per_position = (queries - nearest).pow(2).mean(-1)  # (3, N)
    torch.testing.assert_close(step.region_distance[:, 0], step.distance)
    torch.testing.assert_close(step.region_distance[:, 1], per_position.amax(1))
    torch.testing.assert_close(step.distance_floor, per_position.median(1).values)
    assert step.error_box.shape == (3, 2, 4) and step.distance_box.shape == (3, 2, 4)
    assert step.distance_box[:, 1, 2:].eq(8).all()  # one query position covers 8x8 pixels


def test_score_step_under_a_mask_scores_the_watched_pixels_only() -> None:
    """An operator's mask (watched): every measure leaves the masked pixels out; all-watched changes nothing."""
    torch.manual_seed(0)
    model = MemoryAE(SMALL).eval()
    x, target = torch.rand(2, 4, 16, 24) * 2 - 1, torch.rand(2, 1, 16, 24) * 2 - 1
    items = model.items.expand(2, -1, -1).clone()
    args = (model, x, target, items, 0.01, (0, 8), (0, 1))
    plain, everywhere = score_step(*args), score_step(*args, watched=torch.ones(2, 16, 24))
    for a, b in zip(plain, everywhere):
        torch.testing.assert_close(a, b)
    watched = torch.ones(2, 16, 24)
    watched[:, :, 16:] = 0  # the right third, two query columns of three
    step = score_step(*args, watched=watched)
    out = model(x, items)
    error = ((out.frame - target) / 2).square()[:, 0]
    left = error[:, :, :16]
    torch.testing.assert_close(step.psnr, 10 * torch.log10(1 / left.mean(dim=(1, 2))))
    worst = torch.nn.functional.avg_pool2d(left[:, None], 8, 4).flatten(1).amax(1)  # windows wholly on the left
    torch.testing.assert_close(step.region_psnr[:, 1], 10 * torch.log10(1 / worst))
    assert step.error[:, :, :, 16:].eq(0).all() and torch.equal(step.error[:, 0, :, :16], left)
    per_position = (out.queries - memory.nearest_item(out.queries, items)).pow(2).mean(-1).view(2, 2, 3)[:, :, :2]
    torch.testing.assert_close(step.distance, per_position.mean(dim=(1, 2)))
    torch.testing.assert_close(step.region_distance[:, 1], per_position.flatten(1).amax(1))
    torch.testing.assert_close(step.distance_floor, per_position.flatten(1).median(1).values)
    assert step.error_box[:, 1, 0].add(step.error_box[:, 1, 2]).le(16).all()  # the box lies in the watched part


def test_relative_distance_divides_by_the_frames_median() -> None:
    from model.scoring import ClipScores

    s = ClipScores("c", np.array([30.0, 31]), np.array([1.0, 2]), 4, np.array([[30.0], [31]]), np.array([[4.0], [6]]),
                   np.array([2.0, 3.0]), np.array([[36.0], [33]]))  # fmt: skip
    np.testing.assert_allclose(s.measures(relative=True)[1], [2.0, 2.0])
    np.testing.assert_allclose(s.measures()[1], [4.0, 6.0])
    cal = Calibration.fit(np.array([30.0, 31, 32]), np.array([1.0, 2, 3]), 0.5)
    assert cal.measures(s)[1].tolist() == [4.0, 6.0]  # an absolute calibration takes the plain column
    assert cal.measures(s)[0].tolist() == [30.0, 31.0]


def test_relative_error_is_the_worst_windows_psnr_minus_the_median_windows() -> None:
    from model.scoring import ClipScores

    s = ClipScores("c", np.array([30.0, 31]), np.array([1.0, 2]), 4, np.array([[30.0], [31]]), np.array([[4.0], [6]]),
                   np.array([2.0, 3.0]), np.array([[36.0], [33]]))  # fmt: skip
    np.testing.assert_allclose(s.measures(error_relative=True)[0], [-6.0, -2.0])  # the second frame stands out less
    cal = Calibration.fit(np.array([-3.0, -2, -1]), np.array([1.0, 2, 3]), 0.5, Regions(12, 0, False, True))
    assert cal.error_relative and cal.regions == Regions(12, 0, False, True)
    assert cal.measures(s)[0].tolist() == [-6.0, -2.0]
