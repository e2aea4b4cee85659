"""Capture, apart from detection: one reader thread per source decodes, samples to the model's
frame rate, converts to the model's input format and drops the frame into the lane's buffer.

On end of stream or error it reconnects with capped exponential backoff and says so in `state`.
A local file (operator's choice, at start only) loops forever at its native frame rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2

from model.data import preprocess
from model.network import ModelConfig
from service.buffer import Frame, FrameBuffer
from service.windows import FpsSampler

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")


def redact(url: str) -> str:
    """The URL with any password replaced: stream listings must not leak camera credentials."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def is_local_file(url: str) -> bool:
    return urlsplit(url).scheme.lower() not in NETWORK_SCHEMES


class RateMeter:
    """Events per second over the last few seconds."""

    def __init__(self, horizon_s: float = 3.0) -> None:
        self.horizon = horizon_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > self.horizon:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.horizon:
            self._times.popleft()
        return len(self._times) / self.horizon


@dataclass
class ReaderHooks:
    """Metric callbacks, so this module needs no metrics objects."""

    read: Callable[[], None] = lambda: None
    dropped: Callable[[int], None] = lambda n: None
    error: Callable[[], None] = lambda: None
    reconnect: Callable[[], None] = lambda: None
    up: Callable[[bool], None] = lambda up: None


class Reader:
    def __init__(
        self,
        url: str,
        config: ModelConfig,
        fps: float,
        buffer: FrameBuffer,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        hooks: ReaderHooks | None = None,
        name: str = "reader",
    ) -> None:
        self.url = url
        self.local = is_local_file(url)
        self.config = config
        self.sampler = FpsSampler(fps)
        self.buffer = buffer
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.hooks = hooks or ReaderHooks()
        self.state = "connecting"
        self.last_error: str | None = None
        self.frames_read = 0
        self.reconnects = 0
        self.fps_in = RateMeter()
        self.fps_out = RateMeter()
        self._segment = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, join: bool = False) -> None:
        self._stop.set()
        self.buffer.close()
        self.state = "stopped"
        if join and self._thread.is_alive():
            self._thread.join(timeout=self.read_timeout_s + 1)

    def _open(self) -> cv2.VideoCapture:
        if self.local:
            return cv2.VideoCapture(self.url)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]  # fmt: skip
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _run(self) -> None:
        delay = self.backoff_initial_s
        ever_live = False
        while not self._stop.is_set():
            error = self._session()
            if self._stop.is_set():
                break
            if error is None:  # a local file ended: loop it at once
                self._segment += 1
                continue
            if self.state == "live":
                delay = self.backoff_initial_s  # it worked for a while: start backing off afresh
            ever_live = ever_live or self.state == "live"
            self.hooks.up(False)
            self.hooks.error()
            self.last_error = error
            self.state = "reconnecting" if ever_live else "error"
            log.warning("stream %s: %s; retrying in %.1f s", redact(self.url), error, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff_max_s)
            self.reconnects += 1
            self.hooks.reconnect()
            self._segment += 1
        self.hooks.up(False)
        self.state = "stopped"

    def _session(self) -> str | None:
        """Read until the source fails or ends: the reason, or None when a local file reached its end."""
        capture = self._open()
        try:
            if not capture.isOpened():
                return f"could not open {redact(self.url)} (unreachable, refused, or not a video)"
            native = capture.get(cv2.CAP_PROP_FPS)
            native = native if 0 < native < 1000 else None
            self.sampler.reset()
            # A source no faster than the model's rate keeps every frame: timestamp jitter must not cost frames.
            every_frame = native is not None and native <= 1.1 / self.sampler.period
            started = time.monotonic()
            n = 0
            last_t, last_wall = -1.0, started
            while not self._stop.is_set():
                ok, image = capture.read()
                now = time.monotonic()
                if not ok:
                    if self.local and n > 0:
                        return None
                    return "end of stream" if n > 0 else "no frame could be decoded"
                if n == 0:
                    self.state = "live"
                    self.hooks.up(True)
                if self.local:  # play at native rate: this is a demo camera
                    t = n / (native or self.sampler.period**-1)
                    ahead = started + t - now
                    if ahead > 0 and self._stop.wait(ahead):
                        return None
                else:
                    # Source clock (PTS); FFmpeg repeats the first value, and some sources have none:
                    # then step by the nominal frame period, or by arrival time when that is unknown too.
                    t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    if not t > last_t:
                        t = last_t + (1.0 / native if native else max(now - last_wall, 1e-3))
                captured = time.time()  # after pacing: a file frame is 'captured' when it is due
                last_t, last_wall = t, now
                n += 1
                self.frames_read += 1
                self.fps_in.tick(now)
                self.hooks.read()
                if not (self.sampler.keep(t) or every_frame):
                    continue
                frame = Frame(self.frames_read - 1, self._segment, captured, preprocess(image, self.config), image)
                before = self.buffer.dropped
                self.buffer.put(frame)
                if self.buffer.dropped != before:
                    self.hooks.dropped(self.buffer.dropped - before)
                self.fps_out.tick(now)
            return None
        except cv2.error as e:
            return f"decoder error: {e}"
        finally:
            capture.release()


def check_local_file(path: str) -> str | None:
    """Why a start-time file source cannot be used, or None."""
    p = Path(path)
    if not p.is_file():
        return f"{path}: no such file"
    capture = cv2.VideoCapture(str(p))
    try:
        if not capture.isOpened() or not capture.read()[0]:
            return f"{path}: not a video OpenCV can decode"
    finally:
        capture.release()
    return None
