"""A stream's alert episodes: the alert machine's events, the frame each episode shows (its peak), and what is
stored of them, the row and the peak's thumbnail and heatmap.

Runs on the engine thread but stores nothing there: the writes go to the alert writer (service.alerts.writer)
in the order they happen, open, then peak updates, then close, each with the values of the moment, and the
alert messages are published by the writer once their writes are done. The alert id is reserved up front
(`Store.reserve_alert_id`), so the messages carry it before the row exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from service.alerts.machine import AlertMachine, AlertPolicy, Episode
from service.alerts.snapshots import AlertSnapshots
from service.alerts.views import View
from service.alerts.writer import AlertWriter, Write
from service.core.messages import AlertClose, AlertOpen, Published
from service.core.store import Store

ALERTS_TOPIC = "alerts"  # every stream's alert messages
PEAK_REFRESH_S = 2.0  # an open alert's stored peak (row, thumbnail, heatmap) lags the live one by at most this


def picture_urls(alert_id: int, thumbnail: bool = True, heatmap: bool = True) -> dict[str, str | None]:
    """Where the API serves an alert's pictures (None: not stored)."""
    return {
        "thumbnail_url": f"/api/alerts/{alert_id}/thumbnail.jpg" if thumbnail else None,
        "heatmap_url": f"/api/alerts/{alert_id}/heatmap.png" if heatmap else None,
    }


@dataclass(eq=False)
class Episodes:
    stream: str  # id
    name: str
    model: str
    topic: str  # the stream's own topic; alert messages also go to ALERTS_TOPIC
    policy: AlertPolicy
    store: Store
    writer: AlertWriter
    snapshots: AlertSnapshots | None = None  # None: no pictures
    machine: AlertMachine = field(init=False)
    _candidate: View | None = None  # best frame of the run above `on` that may open an episode
    _peak: View | None = None  # the open episode's peak frame
    _saved_peak: int | None = None  # frame whose pictures the open episode has handed on to be stored
    _saved_at: float = 0.0  # when (capture time)

    def __post_init__(self) -> None:
        self.machine = AlertMachine(self.policy)

    @property
    def open(self) -> bool:
        return self.machine.episode is not None

    def use_policy(self, policy: AlertPolicy) -> None:
        """New thresholds (a calibration came into force); an open episode goes on under them."""
        self.policy = self.machine.policy = policy

    def update(self, view: View) -> str | None:
        """Engine thread: feed one scored frame; 'open' or 'close' when an episode did, else None."""
        was_open = self.open
        event = self.machine.update(view.frame, view.captured, view.score)
        self._track_peak(view, event, was_open)
        self._refresh_peak(view.captured)
        if event is None:
            return None
        self._hand_on(*event)
        return event[0]

    def end(self, reason: str | None = None) -> bool:
        """The stream stops or goes: an open episode ends at its last frame above `off`, stored with the reason;
        nothing is published. Whether one was open."""
        event = self.machine.flush()
        if event is None:
            return False
        self._hand_on(*event, reason=reason, publish=False)
        return True

    def _track_peak(self, view: View, event: tuple[str, Episode] | None, was_open: bool) -> None:
        """Keep (references to) the frame an episode would show: the peak of the opening run, then any higher."""
        episode = self.machine.episode
        if event is not None and event[0] == "open":
            c = self._candidate
            self._peak = c if c is not None and c.frame == event[1].peak_frame else view
            self._candidate = None
        elif episode is not None and episode.peak_frame == view.frame:
            self._peak = view
        if not was_open and episode is None:  # mirror the machine's pending run
            above = view.score >= self.policy.on
            if not above:
                self._candidate = None
            elif self._candidate is None or view.score > self._candidate.score:
                self._candidate = view

    def _hand_on(self, kind: str, episode: Episode, reason: str | None = None, publish: bool = True) -> None:
        """The event's writes (values bound now: the machine changes the episode later) and its messages."""
        writes: list[Write] = []
        if kind == "open":
            episode.id = self.store.reserve_alert_id()
            writes.append(partial(self.store.open_alert, episode.id, self.stream, self.model, episode.start_time,
                                  episode.start_frame, episode.peak_score, episode.peak_frame))  # fmt: skip
        else:
            writes.append(partial(self.store.close_alert, episode.id, episode.end_time, episode.end_frame,
                                  episode.peak_score, episode.peak_frame, reason))  # fmt: skip
        peak = self._peak
        pictures = self.snapshots is not None and episode.id is not None and peak is not None
        if pictures and peak.frame != self._saved_peak:
            writes.append(partial(self.snapshots.save, episode.id, peak))
        self._saved_peak = peak.frame if kind == "open" and peak is not None else None
        self._saved_at = episode.start_time if kind == "open" else 0.0
        if kind == "close":
            self._peak = None
        messages: Published = []
        if publish:
            urls: dict[str, Any] = picture_urls(episode.id) if pictures else picture_urls(0, False, False)
            event = AlertOpen if kind == "open" else AlertClose
            message = event(stream=self.stream, name=self.name, **episode.as_dict(), **urls)
            messages = [(self.topic, message), (ALERTS_TOPIC, message)]
        self.writer.submit(writes, messages)

    def _refresh_peak(self, now: float) -> None:
        """While an episode lasts, its row and pictures follow a rising peak, at most every PEAK_REFRESH_S."""
        episode, peak = self.machine.episode, self._peak
        if episode is None or episode.id is None or self.snapshots is None or peak is None:
            return
        if peak.frame == self._saved_peak or now - self._saved_at < PEAK_REFRESH_S:
            return
        self.writer.submit([
            partial(self.store.update_alert_peak, episode.id, episode.peak_score, episode.peak_frame),
            partial(self.snapshots.save, episode.id, peak),
        ])  # fmt: skip
        self._saved_peak, self._saved_at = peak.frame, now
