"""What the dashboard shows besides numbers, kept cheaply: pictures are encoded only when asked for.

- Live streams keep references to their latest scored frame (picture + error map) and a short
  score history, nothing more; JPEG/PNG are drawn per request.
- Alerts keep a thumbnail and a heatmap of their peak frame (`service.alerts.snapshots`).
- Uploads keep one small error map per scored frame (`ClipMaps`, `MAP_SIDE` px, uint8) in a
  flat file beside the clip, so any frame's heatmap can be shown later: a few KB per frame,
  deleted with the clip; the picture itself is decoded again from the stored video.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.alerts import heatmap

log = logging.getLogger(__name__)

HISTORY = 1200  # scores a stream remembers for charts opened later (2 min at 10 fps)
MAP_SIDE = 96  # longer side of an upload's stored error maps


@dataclass(slots=True)
class View:
    """One scored frame as the dashboard may show it: references, nothing copied or encoded."""

    frame: int
    captured: float
    score: float
    picture: np.ndarray  # decoded picture, or the model input when the source gave none
    error: np.ndarray | None  # (H, W) float32 pixel error at the model's size
    box: tuple[float, float, float, float] | None = None  # the region that set the score, fractions of the frame


class LiveView:
    """A stream's latest scored frame and recent scores (engine thread writes, requests read)."""

    def __init__(self, history: int = HISTORY) -> None:
        self.latest: View | None = None
        self.history: deque[tuple[int, float, float]] = deque(maxlen=history)  # (frame, captured, score)

    def add(self, view: View) -> None:
        self.latest = view
        self.history.append((view.frame, view.captured, view.score))

    def recent(self, limit: int) -> list[dict[str, Any]]:
        rows = list(self.history)[-limit:]
        return [{"frame": f, "captured": t, "score": s} for f, t, s in rows]


class ClipMaps:
    """An upload's error maps, one record per scored frame in scoring order, appended as they come.

    Each record is written with one write() before its score is published, so a reader that
    knows the score also finds the whole map."""

    def __init__(self, directory: Path, clip_id: str) -> None:
        self.data = directory / f"{clip_id}.errors.u8"
        self.meta = directory / f"{clip_id}.errors.json"
        self._fd: int | None = None
        self._closed = False
        self._lock = threading.Lock()  # the decoder thread may close while the engine appends

    def append(self, error: np.ndarray) -> None:
        small = heatmap.shrink(error, MAP_SIDE)
        with self._lock:
            if self._closed:
                return
            if self._fd is None:
                self.meta.write_text(json.dumps({"height": small.shape[0], "width": small.shape[1],
                                                 "dtype": "uint8", "unit": "RMS pixel error x 255"}))  # fmt: skip
                self._fd = os.open(self.data, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(self._fd, np.ascontiguousarray(small).tobytes())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @staticmethod
    def read(directory: Path, clip_id: str, k: int) -> np.ndarray | None:
        """The k-th scored frame's error map (float32 pixel error), or None when not stored."""
        meta = directory / f"{clip_id}.errors.json"
        data = directory / f"{clip_id}.errors.u8"
        if not meta.is_file() or not data.is_file():
            return None
        info = json.loads(meta.read_text())
        size = info["height"] * info["width"]
        if k < 0 or (k + 1) * size > data.stat().st_size:
            return None
        stored = np.fromfile(data, np.uint8, count=size, offset=k * size)
        return heatmap.expand(stored.reshape(info["height"], info["width"]))
