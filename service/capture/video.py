"""Stored videos (uploads, start-time files): opened, probed and decoded in one place, so every reader
releases its decoder and judges a file by the same rules. Network cameras open in `sources.Reader`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from service.core.exceptions import NotAVideo, UnreadableVideo

MAX_FPS = 1000  # a container announcing this or more (or nothing) records no usable frame rate


@contextmanager
def opened(path: Path | str) -> Iterator[cv2.VideoCapture | None]:
    """The video's decoder, or None when FFmpeg cannot open it; released on leaving."""
    capture = cv2.VideoCapture(str(path))
    try:
        yield capture if capture.isOpened() else None
    finally:
        capture.release()


def native_fps(capture: cv2.VideoCapture) -> float | None:
    """The frame rate the container records, or None when it records none that makes sense."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps < MAX_FPS else None


def probe(path: Path, min_frames: int) -> tuple[float | None, int]:
    """(native fps, frame count estimate) of a video; NotAVideo or UnreadableVideo saying what is wrong with it."""
    with opened(path) as capture:
        if capture is None:
            raise NotAVideo("not a video OpenCV/FFmpeg can open (expected e.g. MP4, MKV, AVI, WebM)")
        decoded = 0
        while decoded < min_frames and capture.read()[0]:
            decoded += 1
        if decoded == 0:
            raise UnreadableVideo("corrupt or empty video: the container opened but no frame could be decoded")
        if decoded < min_frames:
            raise UnreadableVideo(f"video too short: {decoded} frame(s), the model needs at least {min_frames}")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return native_fps(capture), max(count, 0)


def frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a stored video in decode order (none when it cannot be opened); cv2.error passes."""
    with opened(path) as capture:
        while capture is not None:
            ok, image = capture.read()
            if not ok:
                return
            yield image


def decode_frame(path: Path, index: int) -> np.ndarray | None:
    """Frame `index` (0-based, decode order) of a stored video, or None past its end."""
    with opened(path) as capture:
        if capture is None:
            return None
        if index > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = capture.read()
        return image if ok else None


def decodes(path: Path) -> bool:
    """Whether the file opens and gives at least one frame."""
    with opened(path) as capture:
        return capture is not None and capture.read()[0]
