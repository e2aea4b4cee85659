"""Drift: a stream's frames compared with its own past, held within a few held-out spreads (model.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from model.calibration import DRIFT_WARMUP, Calibration, Drift, RunningMedians, previous_medians


def reference_medians(values: np.ndarray, frames: int) -> np.ndarray:
    """A plain loop: the median of up to `frames` values before each one, NaN during the warm-up."""
    return np.array(
        [np.median(values[max(0, t - frames) : t]) if t >= DRIFT_WARMUP else np.nan for t in range(len(values))]
    )


@pytest.mark.parametrize("frames", [1, 7, 30, 100])
def test_previous_medians_match_a_plain_loop_per_stream_and_the_running_form(frames: int) -> None:
    rng = np.random.default_rng(frames)
    streams = [rng.normal(30, 2, n) for n in (5, 40, 130)]
    got = previous_medians(np.concatenate(streams), frames, [len(s) for s in streams])
    want = np.concatenate([reference_medians(s, frames) for s in streams])  # no stream sees another's past
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
    running = RunningMedians(frames)
    pushed = np.array([running.push(v, -v)[0] for v in streams[2]])  # the service, one frame at a time
    np.testing.assert_array_equal(pushed, previous_medians(streams[2], frames))


def test_drift_forgives_a_small_lasting_shift_but_never_a_large_one() -> None:
    """A busier hour 1 spread worse in PSNR is absorbed; an anomaly that stays (8 spreads) still scores high
    after it filled the stream's whole past, because the baseline moves at most `cap` spreads."""
    rng = np.random.default_rng(0)
    normal_p, normal_d = rng.normal(40, 1, 600), rng.normal(1, 0.1, 600)
    fixed = Calibration.fit(normal_p, normal_d, 1.0)
    drifting = Calibration.fit(normal_p, normal_d, 1.0, drift=Drift(30, 1.5), lengths=[300, 300])
    assert drifting.drift == Drift(30, 1.5) and (drifting.psnr_mean, drifting.psnr_std) == (
        fixed.psnr_mean,
        fixed.psnr_std,
    )
    busier = rng.normal(39, 1, 200)  # a whole stream 1 spread lower
    d = rng.normal(1, 0.1, 200)
    assert np.mean(fixed.stream_scores(busier, d) >= fixed.alert_on) > 0.05
    assert np.mean(drifting.stream_scores(busier, d)[50:] >= drifting.alert_on) < 0.03
    stays = np.concatenate([rng.normal(40, 1, 50), rng.normal(32, 1, 150)])  # from frame 50 on, for good
    late = drifting.stream_scores(stays, d)[150:]  # its past holds nothing else by now
    assert np.all(late >= drifting.alert_on)
    baseline_p, _ = drifting.baselines(stays, d)
    assert baseline_p.min() >= drifting.psnr_mean - 1.5 * drifting.psnr_std - 1e-9
    assert np.all(baseline_p[:DRIFT_WARMUP] == drifting.psnr_mean)  # the warm-up: the held-out mean


def test_without_drift_a_stream_scores_frame_by_frame_and_older_calibrations_load_without_it() -> None:
    rng = np.random.default_rng(1)
    p, d = rng.normal(30, 1, 100), rng.normal(1, 0.1, 100)
    cal = Calibration.fit(p, d, 0.6)
    assert cal.drift == Drift() and cal.baselines(p, d) is None
    np.testing.assert_array_equal(cal.stream_scores(p, d), cal.score(p, d))
    older = {k: v for k, v in cal.to_dict().items() if not k.startswith("drift")}
    assert Calibration(**older) == cal
    with pytest.raises(ValueError, match="negative"):
        Calibration(**{**cal.to_dict(), "drift_frames": -1})


def test_evaluate_reports_the_scores_the_service_sends_with_drift() -> None:
    """`metrics.report`'s streaming AUCs are those of each clip's `clip_scores`, every clip its own stream."""
    from model.metrics import metrics, report
    from model.scoring import ClipScores

    rng = np.random.default_rng(2)
    clips, labels = [], []
    for k, offset in enumerate((0.0, -1.5, 0.5)):  # three days, one busier
        y = (np.arange(120) >= 60 + 10 * k) & (np.arange(120) < 80 + 10 * k)
        p = rng.normal(40 + offset, 1, 120) - 4 * y
        d = rng.normal(1, 0.1, 120) + 0.3 * y
        clips.append(ClipScores(f"c{k}", p, d, 4, p[:, None], d[:, None], np.ones(120), p[:, None] + 3))
        labels.append(y)
    cal = Calibration.fit(rng.normal(40, 1, 300), rng.normal(1, 0.1, 300), 0.5, drift=Drift(30, 1.0))
    y = np.concatenate(labels)
    got = report(clips, y, cal, 0.6)["streaming"]
    sent = np.concatenate([cal.clip_scores(c) for c in clips])
    assert got["fused"] == metrics(y, sent)
    fixed = np.asarray(cal.score(np.concatenate([c.psnr for c in clips]), np.concatenate([c.distance for c in clips])))
    assert got["fused"] != metrics(y, fixed)  # drift did change the scores: the check above compared something
