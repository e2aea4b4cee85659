"""scripts/fusion_probe.py: the two z-scores fused as they are, against the landed logistic."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from model.calibration import Calibration, Drift

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from fusion_probe import LinearCalibration, MaxCalibration  # noqa: E402


def test_linear_fusion_adds_the_z_scores_and_sets_thresholds_on_its_own_scores() -> None:
    rng = np.random.default_rng(0)
    psnr, distance = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300)
    linear = LinearCalibration.fit(psnr, distance, 0.4)
    landed = Calibration.fit(psnr, distance, 0.4)
    z_p, z_d = (28.0 - linear.psnr_mean) / linear.psnr_std, (1.5 - linear.distance_mean) / linear.distance_std
    assert np.isclose(linear.score(28.0, 1.5), 0.4 * (1 - z_p) + 0.6 * z_d)
    assert landed.score(28.0, 1.5) < 1 < linear.score(28.0, 1.5)  # the logistic saturates, the sum does not
    normal = 0.4 * (1 - (psnr - linear.psnr_mean) / linear.psnr_std) + 0.6 * (distance - linear.distance_mean) / (
        linear.distance_std
    )
    assert np.isclose(linear.alert_on, np.quantile(normal, 0.99))


def test_one_term_far_off_outranks_both_a_little_off_only_when_linear() -> None:
    rng = np.random.default_rng(1)
    psnr, distance = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300)
    one_far = 30 - 6 * psnr.std(), distance.mean()  # PSNR 6 spreads down, distance usual
    both_some = 30 - 2.5 * psnr.std(), distance.mean() + 2.5 * distance.std()  # a crowd: both 2.5 spreads off
    landed, linear = Calibration.fit(psnr, distance, 0.5), LinearCalibration.fit(psnr, distance, 0.5)
    assert landed.score(*one_far) < landed.score(*both_some)
    assert linear.score(*one_far) > linear.score(*both_some)


def test_drift_baselines_still_apply() -> None:
    rng = np.random.default_rng(2)
    psnr, distance = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300)
    linear = LinearCalibration.fit(psnr, distance, 0.5, drift=Drift(30, 1.0))
    shifted = linear.stream_scores(psnr - 0.5 * psnr.std(), distance)  # a day half a spread darker
    fixed = LinearCalibration.fit(psnr, distance, 0.5).stream_scores(psnr - 0.5 * psnr.std(), distance)
    assert shifted[50:].mean() < fixed[50:].mean()  # the drift forgives the shift once the stream has a past


def test_the_weighted_max_is_the_larger_weighted_term_and_sets_thresholds_on_its_own_scores() -> None:
    rng = np.random.default_rng(3)
    psnr, distance = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300)
    peak = MaxCalibration.fit(psnr, distance, 0.4)
    p, d = peak.terms(psnr, distance)
    assert np.allclose(peak.stream_scores(psnr, distance), np.maximum(0.4 * (1 - p), 0.6 * d))
    assert np.isclose(peak.alert_on, np.quantile(np.maximum(0.4 * (1 - p), 0.6 * d), 0.99))
    # the term that set the score is the one whose box the service sends
    dominant = peak.distance_dominates(psnr, distance)
    assert np.allclose(np.where(dominant, 0.6 * d, 0.4 * (1 - p)), peak.stream_scores(psnr, distance))


def test_either_term_alone_outranks_both_a_little_off_only_with_the_max() -> None:
    rng = np.random.default_rng(4)
    psnr, distance = rng.normal(30, 1, 300), rng.normal(1, 0.1, 300)
    blur = psnr.mean(), distance.mean() + 3 * distance.std()  # only the distance sees it
    rush = psnr.mean() - 3 * psnr.std(), distance.mean()  # only PSNR sees it
    crowd = psnr.mean() - 1.5 * psnr.std(), distance.mean() + 1.5 * distance.std()  # both somewhat off
    landed, peak = Calibration.fit(psnr, distance, 0.5), MaxCalibration.fit(psnr, distance, 0.5)
    assert landed.score(*blur) < landed.score(*crowd) and landed.score(*rush) < landed.score(*crowd)
    assert peak.score(*blur) > peak.score(*crowd) and peak.score(*rush) > peak.score(*crowd)
