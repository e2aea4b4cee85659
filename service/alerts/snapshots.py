"""Alert pictures: a thumbnail (JPEG) and a heatmap (RGBA PNG, same size) of each alert's peak frame, under
`<data-dir>/alerts/`, their file names in the alert's row. Written once when the episode opens, again when a
rising peak moves (at most every few seconds) and when it closes: a few ms per episode, never per frame."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2

from service.alerts import heatmap
from service.alerts.views import View
from service.core.files import write_atomic
from service.core.store import Store

log = logging.getLogger(__name__)

THUMB_WIDTH = 320


class AlertSnapshots:
    """Peak-frame thumbnail (JPEG) and heatmap (RGBA PNG, same size) of each alert, under `directory`;
    the file names go into the alert's row."""

    def __init__(self, directory: Path, store: Store, width: int = THUMB_WIDTH) -> None:
        self.directory = directory
        self.store = store
        self.width = width
        directory.mkdir(parents=True, exist_ok=True)

    def save(self, alert_id: int, view: View) -> None:
        try:
            picture = heatmap.fit(heatmap.to_bgr(view.picture), self.width)
            thumb, heat = f"{alert_id}.jpg", f"{alert_id}.heatmap.png"
            write_atomic(self.directory / thumb, heatmap.jpeg(picture, 85))
            if view.error is not None:
                h, w = picture.shape[:2]
                write_atomic(self.directory / heat, heatmap.png_rgba(heatmap.heatmap_rgba(view.error, h, w)))
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
