"""Anomaly episodes with hysteresis: one noisy frame neither opens nor closes an alert.

An episode opens when the score stays at or above `on` for N frames (it starts at the first
of them) and closes after M consecutive frames below `off` (it ends at the last frame before them).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlertPolicy:
    on: float
    off: float
    on_frames: int = 3
    off_frames: int = 10

    def __post_init__(self) -> None:
        if self.off > self.on:
            raise ValueError(f"alert off threshold {self.off} above the on threshold {self.on}")
        if self.on_frames < 1 or self.off_frames < 1:
            raise ValueError("on_frames and off_frames must be at least 1")


@dataclass
class Episode:
    start_frame: int
    start_time: float
    peak_score: float
    peak_frame: int
    end_frame: int | None = None
    end_time: float | None = None
    id: int | None = None  # set once stored

    def as_dict(self) -> dict:
        return {
            "id": self.id, "start_frame": self.start_frame, "start_time": self.start_time,
            "end_frame": self.end_frame, "end_time": self.end_time,
            "peak_score": self.peak_score, "peak_frame": self.peak_frame,
        }  # fmt: skip


@dataclass
class AlertMachine:
    policy: AlertPolicy
    episode: Episode | None = None
    _run: list[tuple[int, float, float]] = field(default_factory=list)  # pending (frame, time, score) above `on`
    _below: int = 0
    _last_high: tuple[int, float] | None = None

    def update(self, frame: int, time: float, score: float) -> tuple[str, Episode] | None:
        """Feed one scored frame; ('open', episode) or ('close', episode) when that happens."""
        p = self.policy
        if self.episode is None:
            if score >= p.on:
                self._run.append((frame, time, score))
                if len(self._run) >= p.on_frames:
                    start_frame, start_time, _ = self._run[0]
                    peak_frame, _, peak = max(self._run, key=lambda r: r[2])
                    self.episode = Episode(start_frame, start_time, peak, peak_frame)
                    self._last_high, self._below, self._run = (frame, time), 0, []
                    return "open", self.episode
            else:
                self._run = []
            return None
        episode = self.episode
        if score > episode.peak_score:
            episode.peak_score, episode.peak_frame = score, frame
        if score < p.off:
            self._below += 1
            if self._below >= p.off_frames:
                episode.end_frame, episode.end_time = self._last_high
                self.episode, self._below = None, 0
                return "close", episode
        else:
            self._below = 0
            self._last_high = (frame, time)
        return None

    def state(self) -> dict | None:
        """The open episode and where it last stood above `off`, as plain data (a cluster's checkpoint), or None."""
        if self.episode is None:
            return None
        return {**self.episode.as_dict(), "last_high": list(self._last_high or (self.episode.start_frame,
                self.episode.start_time)), "below": self._below}  # fmt: skip

    def resume(self, state: dict | None) -> None:
        """Continue from `state()`: the same episode (with its stored id) stays open, nothing opens again."""
        if state is None:
            self.episode, self._below, self._last_high, self._run = None, 0, None, []
            return
        fields = {k: state[k] for k in ("start_frame", "start_time", "peak_score", "peak_frame", "id")}
        self.episode = Episode(**fields)
        self._last_high = (int(state["last_high"][0]), float(state["last_high"][1]))
        self._below, self._run = int(state.get("below", 0)), []

    def flush(self) -> tuple[str, Episode] | None:
        """Close an open episode at the last frame seen above `off` (end of clip or stream deleted)."""
        if self.episode is None:
            return None
        episode = self.episode
        episode.end_frame, episode.end_time = self._last_high
        self.episode, self._below = None, 0
        return "close", episode
