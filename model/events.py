"""Event-level evaluation, as an operator sees it: alerts raised, how late, and how many for nothing.

Frame AUC ranks single frames; an operator acts on alert episodes. Here the service's own alert
machine (`model.alerts`, hysteresis with on/off frame counts) runs over each clip's scores, and its
episodes are matched to ground-truth *events*: contiguous stretches of anomalous frames.

- An event is **detected** when an episode is open on one of its frames (raised during the event,
  or already open when it started). Its **delay** is the frame the alert was raised on (the
  machine's "open", N frames after the run it opens on started) minus the event's first frame,
  at least 0.
- A **false episode** starts on a normal frame and covers no anomalous frame at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from model.alerts import AlertMachine, AlertPolicy


def events(labels: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool labels -> [(first, last + 1)] of each contiguous anomalous stretch."""
    padded = np.concatenate([[False], np.asarray(labels, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


@dataclass(frozen=True)
class Episode:
    raised: int  # frame index on which the alert fired
    start: int  # first frame of the run that opened it
    end: int  # last frame above the off threshold (inclusive)


def episodes(scores: np.ndarray, policy: AlertPolicy) -> list[Episode]:
    """Run the alert machine over one clip's scores (frame i = scores[i]); flush at the clip's end."""
    machine = AlertMachine(policy)
    raised: int | None = None
    out: list[Episode] = []
    for i, score in enumerate(np.asarray(scores, np.float64)):
        event = machine.update(i, float(i), float(score))
        if event is None:
            continue
        kind, episode = event
        if kind == "open":
            raised = i
        else:
            out.append(
                Episode(raised if raised is not None else episode.start_frame, episode.start_frame, episode.end_frame)
            )
    flushed = machine.flush()
    if flushed is not None:
        out.append(
            Episode(
                raised if raised is not None else flushed[1].start_frame, flushed[1].start_frame, flushed[1].end_frame
            )
        )
    return out


@dataclass
class EventReport:
    events: int
    detected: int
    delays_frames: list[int]  # one per detected event
    false_episodes: int
    episodes: int
    normal_frames: int
    normal_above_on: int  # normal frames scored at or above the alert threshold
    fps: float
    clip_normal: list[tuple[int, int]] = field(default_factory=list)  # per clip: (normal frames, of them above on)

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else float("nan")

    def to_dict(self) -> dict:
        delays = np.asarray(self.delays_frames, np.float64)
        median = float(np.median(delays)) if len(delays) else None
        return {
            "events": self.events,
            "detected": self.detected,
            "recall": self.recall,
            "median_delay_frames": median,
            "median_delay_s": None if median is None else median / self.fps,
            "max_delay_frames": int(delays.max()) if len(delays) else None,
            "delays_frames": self.delays_frames,
            "episodes": self.episodes,
            "false_episodes": self.false_episodes,
            "normal_frames": self.normal_frames,
            "normal_above_on": self.normal_above_on,
            "normal_above_on_share": self.normal_above_on / self.normal_frames if self.normal_frames else None,
            "clip_normal_frames": [n for n, _ in self.clip_normal],
            "clip_normal_above_on": [a for _, a in self.clip_normal],
        }


def evaluate_events(
    labels: Sequence[np.ndarray], scores: Sequence[np.ndarray], policy: AlertPolicy, fps: float
) -> EventReport:
    """Per-clip labels and scores (same lengths, clip by clip) -> the operator's view of all clips."""
    report = EventReport(0, 0, [], 0, 0, 0, 0, fps)
    for clip_labels, clip_scores in zip(labels, scores, strict=True):
        clip_labels = np.asarray(clip_labels, bool)
        clip_scores = np.asarray(clip_scores, np.float64)
        if clip_labels.shape != clip_scores.shape:
            raise ValueError(f"{clip_labels.shape} labels for {clip_scores.shape} scores")
        found = episodes(clip_scores, policy)
        report.episodes += len(found)
        normal, above = int((~clip_labels).sum()), int((clip_scores[~clip_labels] >= policy.on).sum())
        report.normal_frames += normal
        report.normal_above_on += above
        report.clip_normal.append((normal, above))
        for first, stop in events(clip_labels):
            report.events += 1
            covering = [e for e in found if e.start <= stop - 1 and e.end >= first and e.raised <= stop - 1]
            if covering:
                report.detected += 1
                report.delays_frames.append(max(0, min(e.raised for e in covering) - first))
        report.false_episodes += sum(
            1 for e in found if not clip_labels[e.start] and not clip_labels[e.start : e.end + 1].any()
        )
    return report
