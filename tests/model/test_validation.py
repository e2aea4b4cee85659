"""Choosing the scoring setting on synthetic events: AUC among settings that stay calm on benign variation."""

from __future__ import annotations

import numpy as np
import pytest

from model import synthetic
from model.calibration import AlertLevel, Calibration, Drift
from model.data import Clip
from model.regions import Regions
from model.scoring import ClipScores
from model.validation import ALERT_LEVELS, Choice, _Streams, choose, operating_points, pick, streams


def clip(name: str, psnr: np.ndarray, distance: np.ndarray) -> ClipScores:
    """Scores for two error windows (columns) and one distance window; each frame's median error window 3 dB
    above its worst (the relative error carries nothing)."""
    return ClipScores(name, psnr[:, 0], distance[:, 0], 4, psnr, distance, np.ones(len(psnr)), psnr + 3)


def test_choose_scores_every_setting_and_finds_the_informative_window() -> None:
    rng = np.random.default_rng(0)
    n = 200
    normal = clip("n", np.stack([40 + rng.normal(0, 1, n), 30 + rng.normal(0, 1, n)], 1), rng.normal(1, 0.1, (n, 1)))
    y = np.zeros(100, bool)
    y[40:60] = True
    psnr = np.stack([40 + rng.normal(0, 1, 100), 30 + rng.normal(0, 1, 100) - 8 * y], 1)  # only window 2 sees it
    events = clip("e", psnr, rng.normal(1, 0.1, (100, 1)))
    table = choose([normal], [events], [y], error_windows=(0, 16), distance_windows=(0,), weights=(0.0, 0.5, 1.0))
    assert len(table) == 2 * 1 * 3 * 2  # windows x λ x (absolute, relative distance); no relative P unless asked
    best, calibration = pick(table)
    assert (best.error_window, best.weight) == (16, 1.0) and best.auc > 0.99
    assert calibration == Calibration.fit(normal.region_psnr[:, 1], normal.region_distance[:, 0], 1.0, best.regions)
    blind = next(c for c, _ in table if c.error_window == 0 and c.weight == 1.0)
    assert not best.distance_relative  # ties keep the first, absolute, setting
    assert 0.3 < blind.auc < 0.7  # the whole-frame window sees nothing


def test_a_grainier_stream_that_raises_every_window_leaves_the_relative_error_calm() -> None:
    """Compression raises the error of every window, the worst and the median alike: absolute P alarms on the
    whole benign clip, P relative to the frame's median window does not, and still sees a local event."""
    rng = np.random.default_rng(3)

    def scores(name: str, n: int, grain: float, dip: np.ndarray) -> ClipScores:
        median = 45 + rng.normal(0, 0.3, (n, 1)) - grain  # the frame's typical window
        worst = median - 8 + rng.normal(0, 1, (n, 1)) - 6 * dip[:, None]
        return ClipScores(name, worst[:, 0], rng.normal(1, 0.1, n), 4, worst, rng.normal(1, 0.1, (n, 1)),
                          np.ones(n), median)  # fmt: skip

    y = (np.arange(150) >= 80) & (np.arange(150) < 110)
    normal = scores("n", 300, 0.0, np.zeros(300, bool))
    anomalous = [scores("e", 150, 0.0, y), scores("b", 150, 5.0, np.zeros(150, bool))]
    table = choose([normal], anomalous, [y, np.zeros(150, bool)], error_windows=(12,), distance_windows=(0,),
                   weights=(1.0,), benign=[None, "compression"], relative=(False,),
                   error_relative=(False, True))  # fmt: skip
    by_relative = {c.error_relative: c for c, _ in table}
    assert by_relative[False].above["compression"] > 0.9 and by_relative[True].above["compression"] <= 0.05
    assert by_relative[True].auc > 0.95
    best, calibration = pick(table)
    assert best.error_relative and calibration.error_relative and best.regions == Regions(12, 0, False, True)


def test_pick_prefers_a_calm_setting_over_a_better_auc_that_alarms_on_normal_variation() -> None:
    cal = Calibration(30, 1, 1, 1, 0.5, 0.9, 0.8, 100)
    fragile, calm = Choice(0, 0, 0.3, 0.95, benign_above_on=0.40), Choice(12, 0, 1.0, 0.90, benign_above_on=0.02)
    assert pick([(fragile, cal), (calm, cal)])[0] == calm
    worse = Choice(8, 0, 1.0, 0.80, benign_above_on=0.30)
    assert pick([(fragile, cal), (worse, cal)])[0] == worse  # none is calm: the calmest


def test_the_worst_benign_kind_counts_not_the_mean() -> None:
    """A setting calm under three kinds of benign change but alarming under the fourth is not calm."""
    rng = np.random.default_rng(1)
    n = 300
    normal = clip("n", np.stack([30 + rng.normal(0, 1, n)], 1), rng.normal(1, 0.1, (n, 1)))
    calm = [clip(f"b{k}", np.stack([30 + rng.normal(0, 1, 100)], 1), rng.normal(1, 0.1, (100, 1))) for k in range(3)]
    shifted = clip("b3", np.stack([30 + rng.normal(0, 1, 100)], 1), rng.normal(3, 0.1, (100, 1)))  # distance moves
    event = clip("e", np.stack([30 - 8 * (np.arange(100) >= 50)], 1).astype(float), rng.normal(1, 0.1, (100, 1)))
    labels = [np.zeros(100, bool)] * 4 + [np.arange(100) >= 50]
    kinds = ["exposure", "reframe", "compression", "sensor", None]
    table = choose(normal=[normal], anomalous=[*calm, shifted, event], labels=labels, error_windows=(0,),
                   distance_windows=(0,), weights=(0.0, 1.0), benign=kinds, relative=(False,))  # fmt: skip
    by_weight = {c.weight: c for c, _ in table}
    assert by_weight[0.0].benign_above_on > 0.9  # distance alone alarms on every frame of the shifted kind
    assert by_weight[1.0].benign_above_on <= 0.05  # PSNR alone stays calm under all four


def test_busier_days_join_the_threshold_fit_and_are_checked_on_thresholds_fitted_without_them() -> None:
    """A busier day lowers PSNR though nothing is anomalous: thresholds fitted on quiet days alone alarm on it.

    Fitted with the busy days too, a third busy day stays calm; each busy day's own share is measured
    with thresholds fitted without it, so a single busy day cannot vouch for itself."""
    rng = np.random.default_rng(2)
    quiet = clip("n", np.stack([30 + rng.normal(0, 1, 300)], 1), rng.normal(1, 0.1, (300, 1)))
    days = [clip(f"c{k}", np.stack([27 + rng.normal(0, 1, 150)], 1), rng.normal(1, 0.1, (150, 1))) for k in range(3)]
    event = clip("e", np.stack([30 - 9 * (np.arange(100) >= 50)], 1).astype(float), rng.normal(1, 0.1, (100, 1)))
    labels = [np.zeros(150, bool)] * 3 + [np.arange(100) >= 50]
    kinds = ["crowd"] * 3 + [None]
    setting = dict(error_windows=(0,), distance_windows=(0,), weights=(1.0,), benign=kinds, relative=(False,))

    quiet_fit = choose([quiet], [*days, event], labels, **setting)[0]
    assert quiet_fit[0].above["crowd"] > 0.5  # the busy days alarm
    busy_fit = choose([quiet], [*days, event], labels, **setting, busy=[True] * 3 + [False])[0]
    assert busy_fit[0].above["crowd"] <= 0.05  # each day calm under thresholds fitted on the other two
    assert busy_fit[1].frames == 300 + 3 * 150
    typical_busy = (27.0, 1.0)  # PSNR, distance
    assert quiet_fit[1].score(*typical_busy) >= quiet_fit[1].alert_on
    assert busy_fit[1].score(*typical_busy) < busy_fit[1].alert_on
    assert busy_fit[0].auc > 0.9  # the event, far below a busy day, still stands out

    alone = choose([quiet], [days[0], event], [labels[0], labels[3]], **{**setting, "benign": ["crowd", None]},
                   busy=[True, False])[0]  # fmt: skip
    assert alone[0].above["crowd"] > 0.5  # the only busy day is checked against the quiet days' thresholds


def test_choose_follows_drift_when_a_benign_day_sits_lower_throughout() -> None:
    """A benign copy 1.5 spreads worse in PSNR all along alarms under the fixed normalizer; following the
    stream's own past (drift) forgives it, and the events, short dips, still stand out: pick takes drift."""
    rng = np.random.default_rng(3)
    normal = clip("n", np.stack([40 + rng.normal(0, 1, 300)], 1), rng.normal(1, 0.1, (300, 1)))
    dimmer = clip("b", np.stack([38.5 + rng.normal(0, 1, 150)], 1), rng.normal(1, 0.1, (150, 1)))
    y = (np.arange(150) >= 100) & (np.arange(150) < 120)
    event = clip("e", np.stack([40 + rng.normal(0, 1, 150) - 4 * y], 1), rng.normal(1, 0.1, (150, 1)))
    table = choose(
        [normal], [dimmer, event], [np.zeros(150, bool), y], error_windows=(0,), distance_windows=(0,),
        weights=(1.0,), benign=["exposure", None], relative=(False,), drifts=(Drift(), Drift(30, 2.0)),
    )  # fmt: skip
    by_drift = {c.drift: c for c, _ in table}
    assert by_drift[Drift()].benign_above_on > 0.05
    assert by_drift[Drift(30, 2.0)].benign_above_on <= 0.05
    best, calibration = pick(table)
    assert best.drift == calibration.drift == Drift(30, 2.0) and best.auc > 0.95


def test_operating_points_trade_missed_events_for_false_episodes() -> None:
    """Lower thresholds catch a faint event the service's level misses, and raise an episode on a normal bump."""
    normal = np.linspace(0, 1, 1001)  # the fit frames' scores: the 99th percentile is 0.99, the 95th 0.95
    calibration = Calibration(30, 1, 1, 1, 0.5, 0.0, 0.0, len(normal))
    faint = np.full(60, 0.5)
    faint[20:30] = 0.975  # an event only a level under 97.5 % sees
    bump = np.full(60, 0.5)
    bump[40:45] = 0.96  # normal footage, briefly high
    labels = [np.arange(60) // 10 == 2, np.zeros(60, bool)]
    points = {p.level: p for p in operating_points(calibration, normal, labels, [faint, bump], fps=10)}
    assert [p.level for p in points.values()] == list(ALERT_LEVELS)
    default = points[AlertLevel()]
    assert (default.alert_on, default.alert_off) == pytest.approx((0.99, 0.95))
    assert (default.detected, default.events, default.false_episodes, default.normal_above_on) == (0, 1, 0, 0.0)
    sensitive = points[AlertLevel(0.97, 0.93)]
    assert (sensitive.detected, sensitive.false_episodes) == (1, 0)
    assert sensitive.median_delay_s == pytest.approx(0.2)  # the alert machine's 3 frames: raised on the third
    loudest = points[AlertLevel(0.95, 0.90)]
    assert (loudest.detected, loudest.false_episodes) == (1, 1)
    assert loudest.normal_above_on == pytest.approx(5 / 110)  # the bump's frames among both streams' normal ones
    assert "0/1 events" in default.text() and "1 false episodes" in loudest.text()


def test_pooled_draws_are_each_seeds_own_events_with_the_busier_days_once() -> None:
    """Three draws are the events and camera changes of seeds 0, 1 and 2, bit for bit, under names of their
    own; the busier days are no draw (the same walkers every seed), so one copy of each, not three."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 24, 36, 1), dtype=np.uint8) for _ in range(2)]
    clips = [Clip(f"c{k}", f, 10.0) for k, f in enumerate(frames)]
    pooled = streams(clips, 4, [0, 1, 2])
    assert len({f.name for f in pooled}) == len(pooled)
    for seed in (0, 1, 2):
        alone = streams(clips, 4, [seed])
        drawn = [f for f in alone if f.kind not in synthetic.BUSY]
        mine = [f for f in pooled if f.name.endswith(f"@{seed}") and f.kind not in synthetic.BUSY]
        assert [f.name + f"@{seed}" for f in drawn] == [f.name for f in mine]
        for a, b in zip(drawn, mine):
            np.testing.assert_array_equal(a.frames, b.frames)
            np.testing.assert_array_equal(a.labels, b.labels)
    busy = [f for f in pooled if f.kind in synthetic.BUSY]
    assert [f.name for f in busy] == ["c0-crowd@0", "c1-crowd@0"]
    events = [f for f in pooled if f.labels.any()]
    assert len(events) == 3 * sum(f.labels.any() for f in streams(clips, 4, [0]))
    with pytest.raises(ValueError, match="too short"):
        streams([Clip("short", frames[0][:10], 10.0)], 4, [0])


def test_medians_kept_per_measure_column_are_those_each_setting_computes_alone(monkeypatch) -> None:
    """choose keeps a drift's medians per measure column (one PSNR column meets every distance column): the
    table is, bit for bit, the one each setting gets with medians computed for it alone."""
    rng = np.random.default_rng(5)
    y = (np.arange(120) >= 70) & (np.arange(120) < 90)

    def scores(name: str, n: int, dip: np.ndarray) -> ClipScores:
        psnr = np.stack([40 + rng.normal(0, 1, n) - 3 * dip, 30 + rng.normal(0, 1, n)], 1)
        distance = np.stack([rng.normal(1, 0.1, n) + 0.3 * dip, rng.normal(2, 0.2, n)], 1)
        floor = psnr + rng.uniform(2, 4, (n, 1))
        return ClipScores(name, psnr[:, 0], distance[:, 0], 4, psnr, distance, rng.uniform(0.5, 1.5, n), floor)

    normal = [scores("n", 200, np.zeros(200, bool))]
    anomalous = [scores("e", 120, y), scores("b", 120, np.zeros(120, bool))]
    labels = [y, np.zeros(120, bool)]
    kwargs = dict(error_windows=(0, 16), distance_windows=(0, 2), weights=(0.3, 1.0), benign=[None, "exposure"],
                  busy=[False, True], drifts=(Drift(), Drift(10, 1.0), Drift(30, 2.0)),
                  error_relative=(False, True))  # fmt: skip
    kept = choose(normal, anomalous, labels, **kwargs)
    plain = _Streams.of.__func__
    monkeypatch.setattr(
        _Streams, "of", classmethod(lambda cls, parts, drift, memo=None, keys=None: plain(cls, parts, drift))
    )
    alone = choose(normal, anomalous, labels, **kwargs)
    assert len(kept) == 3 * 2 * 2 * 3 * 2  # (whole frame, 16, 16 relative) x distances x relative x drifts x λ
    assert [c for c, _ in kept] == [c for c, _ in alone]
    assert [k for _, k in kept] == [a for _, a in alone]
