"""scripts/scale_probe.py: a drift normalizer that divides by the stream's own spread as well."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from model import validation
from model.calibration import DRIFT_WARMUP, Calibration, Drift, previous_medians

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from scale_probe import MAD_TO_SIGMA, previous_centers_and_spreads, scaled  # noqa: E402


def test_previous_spreads_against_a_plain_loop_and_never_across_streams() -> None:
    rng = np.random.default_rng(0)
    values, lengths, frames = rng.normal(0, 1, 120), [5, 60, 55], 30
    got = previous_centers_and_spreads(values, frames, lengths)
    start = 0
    for length in lengths:
        for t in range(length):
            past = values[start + max(0, t - frames) : start + t]
            if t < DRIFT_WARMUP:
                assert np.isnan(got[start + t]).all()
            else:
                median = np.median(past)
                expected = MAD_TO_SIGMA * np.median(np.abs(past - median))
                assert np.allclose(got[start + t], [median, expected])
        start += length
    assert np.allclose(got[:, 0], previous_medians(values, frames, lengths), equal_nan=True)


def test_a_hold_of_one_spread_is_the_landed_drift_in_fit_and_in_validation() -> None:
    rng = np.random.default_rng(1)
    psnr, distance, lengths = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300), [150, 150]
    drift = Drift(30, 1.0)
    landed = Calibration.fit(psnr, distance, 0.5, drift=drift, lengths=lengths)
    same = scaled(1.0).fit(psnr, distance, 0.5, drift=drift, lengths=lengths)
    assert np.allclose(same.stream_scores(psnr, distance, lengths), landed.stream_scores(psnr, distance, lengths))
    assert np.isclose(same.alert_on, landed.alert_on)
    parts = [(psnr[:150], distance[:150]), (psnr[150:], distance[150:])]
    own = validation._Streams.of(parts, drift)
    own.medians = tuple(previous_centers_and_spreads(v, 30, lengths) for v in (psnr, distance))
    assert np.allclose(own.scores(same), validation._Streams.of(parts, drift).scores(landed))


def test_a_calm_streams_event_stands_out_against_its_own_spread() -> None:
    """Held-out frames spread 1 dB, a stream that varies by 0.3 dB: a 1-dB dip is 3 of its own spreads."""
    rng = np.random.default_rng(2)
    held_out = rng.normal(30, 1.0, 400)
    stream = rng.normal(30, 0.3, 300)
    label = np.zeros(300, dtype=bool)
    label[200:240] = True
    stream[label] -= 1.0
    noisy = rng.normal(30, 1.0, 300)  # a second stream, normal, as wobbly as the held-out frames
    psnr, lengths = np.concatenate([stream, noisy]), [300, 300]
    distance = np.ones(600)
    y = np.concatenate([label, np.zeros(300, dtype=bool)])
    kwargs = dict(drift=Drift(100, 1.0))
    landed = Calibration.fit(held_out, np.ones(400), 1.0, **kwargs)
    own = scaled(3.0).fit(held_out, np.ones(400), 1.0, **kwargs)
    auc_landed = roc_auc_score(y, landed.stream_scores(psnr, distance, lengths))
    auc_own = roc_auc_score(y, own.stream_scores(psnr, distance, lengths))
    assert auc_own > auc_landed
