"""What the dashboard shows besides numbers, kept cheaply: pictures are encoded only when asked for.

- Live streams keep references to their latest scored frame (picture + error map) and a short
  score history, nothing more; JPEG/PNG are drawn per request.
- Alerts keep a thumbnail and a heatmap of their peak frame, written once when the episode
  opens and again when it closes if the peak moved (a few ms per episode, never per frame).
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

import cv2
import numpy as np

from service import heatmap

log = logging.getLogger(__name__)

HISTORY = 1200  # scores a stream remembers for charts opened later (2 min at 10 fps)
THUMB_WIDTH = 320
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


class AlertSnapshots:
    """Peak-frame thumbnail (JPEG) and heatmap (RGBA PNG, same size) of each alert, under `directory`;
    the file names go into the alert's row."""

    def __init__(self, directory: Path, store, width: int = THUMB_WIDTH) -> None:
        self.directory = directory
        self.store = store
        self.width = width
        directory.mkdir(parents=True, exist_ok=True)

    def save(self, alert_id: int, view: View) -> None:
        try:
            picture = heatmap.fit(heatmap.to_bgr(view.picture), self.width)
            thumb, heat = f"{alert_id}.jpg", f"{alert_id}.heatmap.png"
            _write(self.directory / thumb, heatmap.jpeg(picture, 85))
            if view.error is not None:
                h, w = picture.shape[:2]
                _write(self.directory / heat, heatmap.png_rgba(heatmap.heatmap_rgba(view.error, h, w)))
            if not self.store.set_alert_snapshot(alert_id, thumb, heat if view.error is not None else None):
                # the alert was deleted while this was written (its stream deleted on the engine's back)
                for name in (thumb, heat):
                    (self.directory / name).unlink(missing_ok=True)
        except (OSError, ValueError, cv2.error):  # a full disk must not stop scoring
            log.exception("could not store the snapshot of alert %s", alert_id)

    def delete(self, rows: list[dict[str, Any]]) -> None:
        """Remove the pictures of deleted alert rows (retention, or their stream deleted)."""
        for row in rows:
            for name in (row.get("thumbnail"), row.get("heatmap")):
                if (p := self.path(name)) is not None:
                    p.unlink(missing_ok=True)

    def sweep_orphans(self, known: set[int]) -> int:
        """Remove pictures whose alert row is gone (a crash between deleting the row and its files)."""
        removed = 0
        for p in self.directory.iterdir():
            stem = p.name.split(".", 1)[0]
            if not stem.isdigit() or int(stem) not in known:
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def path(self, name: str | None) -> Path | None:
        if not name or "/" in name or name.startswith("."):
            return None
        p = self.directory / name
        return p if p.is_file() else None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


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


def decode_frame(path: Path, index: int) -> np.ndarray | None:
    """Frame `index` (0-based, decode order) of a stored video, or None past its end."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None
        if index > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = capture.read()
        return image if ok else None
    finally:
        capture.release()
