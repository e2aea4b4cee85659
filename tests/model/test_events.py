"""Event-level metrics on hand-made label and score sequences: a late alert, a missed event, a false episode."""

from __future__ import annotations

import numpy as np

from model.alerts import AlertPolicy
from model.events import episodes, evaluate_events, events

POLICY = AlertPolicy(on=0.5, off=0.4, on_frames=3, off_frames=2)


def labels(length: int, *spans: tuple[int, int]) -> np.ndarray:
    y = np.zeros(length, bool)
    for a, b in spans:
        y[a:b] = True
    return y


def test_events_are_contiguous_anomalous_stretches() -> None:
    assert events(labels(12, (0, 2), (5, 9))) == [(0, 2), (5, 9)]
    assert events(labels(5)) == []
    assert events(np.ones(4, bool)) == [(0, 4)]


def test_a_late_alert_counts_with_its_delay_from_the_event_start() -> None:
    y = labels(40, (10, 30))
    s = np.zeros(40)
    s[16:30] = 0.9  # above 'on' from frame 16; the machine fires on the third such frame, 18
    report = evaluate_events([y], [s], POLICY, fps=10).to_dict()
    assert report["detected"] == 1 and report["events"] == 1
    assert report["delays_frames"] == [8]
    assert report["median_delay_s"] == 0.8
    assert report["false_episodes"] == 0


def test_a_missed_event_and_a_false_episode() -> None:
    y = labels(60, (30, 40))
    s = np.zeros(60)
    s[5:12] = 0.9  # an episode on normal footage only
    s[31:33] = 0.9  # two frames: fewer than on_frames, no alert for the event
    report = evaluate_events([y], [s], POLICY, fps=10)
    assert (report.events, report.detected, report.delays_frames) == (1, 0, [])
    assert report.episodes == 1 and report.false_episodes == 1
    assert report.normal_above_on == 7 and report.normal_frames == 50


def test_an_alert_open_when_the_event_starts_is_on_time_and_not_false() -> None:
    y = labels(30, (10, 20))
    s = np.zeros(30)
    s[7:20] = 0.9  # opens at frame 9 (raised), one frame before the labelled start
    report = evaluate_events([y], [s], POLICY, fps=10)
    assert report.detected == 1 and report.delays_frames == [0]
    assert report.false_episodes == 0  # it covers the event: the labels just start late


def test_an_episode_still_open_at_the_clips_end_is_flushed() -> None:
    s = np.zeros(20)
    s[15:] = 0.9
    (e,) = episodes(s, POLICY)
    assert (e.start, e.raised, e.end) == (15, 17, 19)


def test_clips_are_matched_one_to_one() -> None:
    y1, y2 = labels(20, (5, 10)), labels(20, (12, 18))
    s1, s2 = np.zeros(20), np.zeros(20)
    s1[5:10] = 0.9  # detected, delay 2
    report = evaluate_events([y1, y2], [s1, s2], POLICY, fps=5)
    assert (report.events, report.detected, report.delays_frames) == (2, 1, [2])
    assert report.recall == 0.5
    s2[0] = 0.9  # one normal frame of the second clip above alert_on: counted where it happened
    per_clip = evaluate_events([y1, y2], [s1, s2], POLICY, fps=5).to_dict()
    assert per_clip["clip_normal_frames"] == [15, 14] and per_clip["clip_normal_above_on"] == [0, 1]
