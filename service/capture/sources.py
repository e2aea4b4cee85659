"""Capture, apart from detection: one reader thread per source decodes, samples to the model's
frame rate, converts to the model's input format and drops the frame into the lane's buffer.

On end of stream or error it reconnects with capped exponential backoff and says so in `state`; the
delay starts over only after a session delivered frames for `healthy_s` (a source that sends a few
frames and ends must not be reopened twice a second forever). Every network (re)connect goes through the
source policy (service/core/policy.py) first. A local file (operator's choice, at start only) loops forever
at its native frame rate.
"""

from __future__ import annotations

import logging
import os
import socket
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
from service.capture.buffer import Frame, FrameBuffer
from service.capture.video import decodes, native_fps
from service.capture.windows import FpsSampler, keeps_every_frame
from service.core.policy import SOURCE_UNAVAILABLE, SourcePolicy, SourceRefused

log = logging.getLogger(__name__)
DROP_LOG_S = 10.0  # dropped frames are logged at most this often per stream (all are counted)


def limit_probe(probe_ms: float) -> None:
    """Cap how long FFmpeg analyzes a source when opening it (its default: up to 5 s of an RTSP stream). OpenCV
    opens one FFmpeg source at a time (a process-wide lock), so every camera that (re)connects waits for the
    opens before it: with FFmpeg's default, 4 cameras connecting together took 2.8, 5.6, 8.4 and 11.3 s.
    Process-wide, called once before any source opens; an operator's own OPENCV_FFMPEG_CAPTURE_OPTIONS wins.
    RTSP over TCP is OpenCV's own default, which it applies only while that variable is unset: over UDP a
    lossless test camera's frames arrived damaged (parity test)."""
    options = f"rtsp_transport;tcp|analyzeduration;{round(probe_ms * 1000)}"
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", options)


DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def reach(url: str, timeout_s: float) -> None:
    """Check that the camera answers before FFmpeg opens it; OSError when it does not in time. OpenCV opens one
    source at a time, holding a process-wide lock while FFmpeg connects: a camera that is off, unreachable or
    hung would hold every other camera's (re)connect for the whole open timeout. Checked here, outside that
    lock, it fails alone. rtsp: an OPTIONS request must get an RTSP status line (any status: 401 means it is
    alive); other schemes: a TCP connection (a TLS server that accepts and then stalls still holds the lock)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS.get(scheme)
    if parts.hostname is None or port is None:
        return  # nothing to check: FFmpeg will say
    with socket.create_connection((parts.hostname, port), timeout=timeout_s) as s:
        if scheme != "rtsp":
            return
        target = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # no credentials on the wire
        s.sendall(f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: mnad\r\n\r\n".encode())
        answer = b""
        while len(answer) < 5 and (chunk := s.recv(16)):
            answer += chunk
        if not answer.startswith(b"RTSP/"):
            raise ConnectionError(f"no RTSP answer to OPTIONS ({answer[:16]!r})")


def redact(url: str) -> str:
    """The URL with any password replaced: stream listings must not leak camera credentials."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port:  # .port raises on a port that is not a number
            host += f":{parts.port}"
    except ValueError:  # unparsable (an unbalanced '[', a port 'A'): show none of it, it may hold a password
        return "(unparsable URL)"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def is_local_file(url: str) -> bool:
    """A plain path (no scheme): FFmpeg's other protocols (ftp:, tcp:, concat:, ...) are never 'local'."""
    try:
        return not urlsplit(url).scheme
    except ValueError:  # not a URL FFmpeg could use either; the source policy refuses it
        return False


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
    backoff: Callable[[float], None] = lambda seconds: None  # the delay before the next reconnect (0: live)
    refused: Callable[[], None] = lambda: None  # the source policy refused the URL at a (re)connect


class Reader:
    def __init__(
        self,
        url: str,
        config: ModelConfig,
        fps: float,
        buffer: FrameBuffer | None,  # None: standby, frames are read and dropped until attach()
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthy_s: float = 30.0,
        hooks: ReaderHooks | None = None,
        name: str = "reader",
        policy: SourcePolicy | None = None,
        local_ok: bool = False,
    ) -> None:
        self.url = url
        # a path is read as a local file only where the operator allowed it (start-time streams);
        # otherwise it goes to the policy like any URL, which refuses it
        self.local = local_ok and is_local_file(url)
        self.policy = policy or SourcePolicy()
        self.config = config
        self.sampler = FpsSampler(fps)
        self.buffer = buffer
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.healthy_s = healthy_s
        self.backoff_s = 0.0  # the delay the reader waits now before reconnecting (0 while connecting or live)
        self._live_since: float | None = None  # first and latest frame of the current session
        self._last_frame: float | None = None
        self.hooks = hooks or ReaderHooks()
        self.state = "connecting"
        self.last_error: str | None = None
        self.frames_read = 0
        self.reconnects = 0
        self.fps_in = RateMeter()
        self.fps_out = RateMeter()
        self._segment = 0
        self._drops_unlogged, self._drop_logged = 0, -DROP_LOG_S
        self._index_base = 0  # frames read before attach(): frame indices count from there
        self._attach_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def attach(self, buffer: FrameBuffer, hooks: ReaderHooks | None = None) -> None:
        """From the next frame on, feed `buffer` (numbered from 0) instead of the current one. A standby reader,
        connected ahead with a buffer nobody reads, becomes a stream's reader without reconnecting: a camera
        that moves between shards loses no frames to the new connect (make before break)."""
        with self._attach_lock:
            self.buffer, self._index_base = buffer, self.frames_read
            if hooks is not None:
                self.hooks = hooks
                hooks.up(self.state == "live")

    def stop(self, join: bool = False) -> None:
        self._stop.set()
        if self.buffer is not None:
            self.buffer.close()
        self.state = "stopped"
        if join and self._thread.is_alive():
            self._thread.join(timeout=self.read_timeout_s + 1)

    def _open(self) -> cv2.VideoCapture:
        """Raises SourceRefused when the source policy refuses the URL or any address its host resolves to now."""
        if self.local:
            return cv2.VideoCapture(self.url)
        pinned = self.policy.pin(self.url)  # FFmpeg gets the checked address, never the name
        reach(pinned, self.open_timeout_s)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]  # fmt: skip
        return cv2.VideoCapture(pinned, cv2.CAP_FFMPEG, params)

    def _healthy(self) -> bool:
        """The session just ended delivered frames for at least healthy_s."""
        return (
            self._live_since is not None and self._last_frame is not None
            and self._last_frame - self._live_since >= self.healthy_s
        )  # fmt: skip

    def _run(self) -> None:
        delay = self.backoff_initial_s
        ever_live = False
        while not self._stop.is_set():
            try:
                error = self._session()
            except Exception as e:  # a bug or a source nothing expected: reported and retried, never a dead thread
                log.exception("stream %s: reader failed", redact(self.url))  # that would leave the state "live"
                error = f"reader error: {type(e).__name__}: {e}"
            if self._stop.is_set():
                break
            if error is None:  # a local file ended: loop it at once
                self._segment += 1
                continue
            if self._healthy():
                delay = self.backoff_initial_s  # it worked for a while: start backing off afresh
            ever_live = ever_live or self.state == "live"
            self.hooks.up(False)
            self.hooks.error()
            self.last_error = error
            self.state = "reconnecting" if ever_live else "error"
            log.warning("stream %s: %s; retrying in %.1f s", redact(self.url), error, delay)
            self.backoff_s = delay
            self.hooks.backoff(delay)
            if self._stop.wait(delay):
                break
            self.backoff_s = 0.0
            self.hooks.backoff(0.0)
            delay = min(delay * 2, self.backoff_max_s)
            self.reconnects += 1
            self.hooks.reconnect()
            self._segment += 1
        self.hooks.up(False)
        self.state = "stopped"

    def _dropped(self, n: int, now: float) -> None:
        """Count a drop, and say it in the log at most every DROP_LOG_S: when and how far behind the engine was
        is what tells a stall from an overloaded machine."""
        self.hooks.dropped(n)
        self._drops_unlogged += n
        if now - self._drop_logged >= DROP_LOG_S:
            log.warning("stream %s: the engine fell behind; %d frame(s) dropped (%d waiting, %.2f s behind)",
                        redact(self.url), self._drops_unlogged, len(self.buffer), self.buffer.behind_s)  # fmt: skip
            self._drops_unlogged, self._drop_logged = 0, now

    def _unavailable(self, reason: str) -> str:
        """One text for the caller whatever kept the source from delivering a first frame (see policy.py);
        the precise reason goes to the log."""
        log.info("stream %s unavailable: %s", redact(self.url), reason)
        return SOURCE_UNAVAILABLE

    def _session(self) -> str | None:
        """Read until the source fails or ends: the reason, or None when a local file reached its end."""
        self._live_since = self._last_frame = None
        opening = time.monotonic()
        try:
            capture = self._open()
        except SourceRefused as e:
            self.hooks.refused()
            return self._unavailable(f"refused by the source policy: {e}")
        except OSError as e:  # reach(): off, unreachable, or refusing connections
            return self._unavailable(f"could not connect: {e}")
        n = 0
        try:
            if not capture.isOpened():
                return self._unavailable("could not open")
            native = native_fps(capture)
            self.sampler.reset()
            # A source no faster than the model's rate keeps every frame: timestamp jitter must not cost frames.
            every_frame = keeps_every_frame(native, 1 / self.sampler.period)
            started = time.monotonic()
            last_t, last_wall = -1.0, started
            while not self._stop.is_set():
                ok, image = capture.read()
                now = time.monotonic()
                if not ok:
                    if self.local and n > 0:
                        return None
                    return "end of stream" if n > 0 else self._unavailable("no frame could be decoded")
                if n == 0:
                    log.info("stream %s: live, first frame %.2f s after connecting", redact(self.url), now - opening)
                    self.state = "live"
                    self.last_error = None  # recovered
                    self._live_since = now
                    self.hooks.up(True)
                self._last_frame = now
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
                if self.buffer is None:  # standby: connected ahead, discarding until attach()
                    continue
                pixels = preprocess(image, self.config)
                with self._attach_lock:
                    frame = Frame(self.frames_read - 1 - self._index_base, self._segment, captured, pixels, image)
                    before = self.buffer.dropped
                    self.buffer.put(frame)
                    if self.buffer.dropped != before:
                        self._dropped(self.buffer.dropped - before, now)
                self.fps_out.tick(now)
            return None
        except cv2.error as e:
            return f"decoder error: {e}" if n > 0 else self._unavailable(f"decoder error: {e}")
        finally:
            capture.release()


def check_local_file(path: str) -> str | None:
    """Why a start-time file source cannot be used, or None."""
    p = Path(path)
    if not p.is_file():
        return f"{path}: no such file"
    if not decodes(p):
        return f"{path}: not a video OpenCV can decode"
    return None
