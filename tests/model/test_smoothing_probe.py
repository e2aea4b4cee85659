"""scripts/smoothing_probe.py: a stream's score as the trailing mean of its last k fused scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from model import validation
from model.calibration import Calibration, Drift

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from smoothing_probe import smoothed, streams_send, trailing_mean  # noqa: E402


def test_trailing_mean_against_a_plain_loop_and_never_across_streams() -> None:
    rng = np.random.default_rng(0)
    scores, lengths = rng.random(40), [7, 1, 20, 12]
    for frames in (1, 2, 3, 5, 8):
        expected, start = [], 0
        for length in lengths:
            for t in range(length):
                expected.append(scores[start + max(0, t - frames + 1) : start + t + 1].mean())
            start += length
        assert np.allclose(trailing_mean(scores, frames, lengths), expected)
    assert np.array_equal(trailing_mean(scores, 1, lengths), scores)


def test_thresholds_are_quantiles_of_the_smoothed_normal_scores_with_and_without_drift() -> None:
    rng = np.random.default_rng(1)
    psnr, distance, lengths = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300), [150, 150]
    for drift in (Drift(), Drift(30, 1.0)):
        landed = Calibration.fit(psnr, distance, 0.5, drift=drift, lengths=lengths)
        sent = trailing_mean(landed.stream_scores(psnr, distance, lengths), 5, lengths)
        kind = smoothed(5)
        medians = validation._Streams.of([(psnr[:150], distance[:150]), (psnr[150:], distance[150:])], drift).medians
        for fitted in (
            kind.fit(psnr, distance, 0.5, drift=drift, lengths=lengths),
            kind.fit(psnr, distance, 0.5, drift=drift, lengths=lengths, medians=medians),
        ):
            assert np.allclose(fitted.stream_scores(psnr, distance, lengths), sent)
            assert np.isclose(fitted.alert_on, np.quantile(sent, 0.99))
            assert fitted.alert_on < landed.alert_on  # averaging narrows the normal scores' tail


def test_validation_streams_send_the_smoothed_scores_and_a_lasting_event_ranks_higher() -> None:
    rng = np.random.default_rng(2)
    n = 400
    psnr, distance = rng.normal(30, 1, n), rng.normal(1, 0.1, n)
    label = np.zeros(n, dtype=bool)
    label[200:260] = True
    psnr[label] -= 1.0  # an event a spread deep, lasting 60 frames, amid frame-to-frame noise
    streams = validation._Streams.of([(psnr, distance)], Drift())
    landed = streams.fit(1.0, validation.Regions(), Drift())
    five = smoothed(5).fit(psnr, distance, 1.0, lengths=[n])
    assert np.allclose(streams_send(streams, five), trailing_mean(streams.scores(landed), 5, [n]))
    assert roc_auc_score(label, streams_send(streams, five)) > roc_auc_score(label, streams.scores(landed))
