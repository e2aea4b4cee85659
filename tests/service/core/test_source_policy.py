"""The source policy (SSRF guard) and the reader's reconnects, against real sockets on loopback.

The reader tests run FFmpeg (through OpenCV) against real servers: a TCP port that accepts and says
nothing, an HTTP server with a text file, an HTTP server with a 6-frame video, and a closed port."""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_ffv1
from support import wait_for

from model.network import ModelConfig
from service.capture.buffer import FrameBuffer
from service.capture.sources import Reader, ReaderHooks
from service.core.policy import SOURCE_UNAVAILABLE, SourcePolicy, SourceRefused, Unresolved, parse_network

CONFIG = ModelConfig(base_width=4, height=32, width=48)
LOOPBACK = SourcePolicy.parse(["private", "public", "127.0.0.0/8"], ["rtsp", "rtsps", "http", "https"])
DEFAULT = SourcePolicy.parse(["private", "public"], ["rtsp", "rtsps", "http", "https"])


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.5.5.5", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1", "fe80::1%lo",
     "224.0.0.1", "239.255.255.250", "ff02::1", "0.0.0.0", "::", "240.0.0.1", "255.255.255.255"],
)  # fmt: skip
def test_special_addresses_refused_by_default(address: str) -> None:
    assert not DEFAULT.address_allowed(address)


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.0.9", "192.168.1.20", "100.64.3.4", "fd12::1", "8.8.8.8", "2001:4860::8888"]
)
def test_private_lans_and_public_addresses_allowed_by_default(address: str) -> None:
    assert DEFAULT.address_allowed(address)


def test_listed_networks_allow_special_addresses_and_keywords_can_be_dropped() -> None:
    assert LOOPBACK.address_allowed("127.0.0.1") and LOOPBACK.address_allowed("::ffff:127.0.0.1")
    assert not LOOPBACK.address_allowed("::1") and not LOOPBACK.address_allowed("169.254.169.254")
    lan_only = SourcePolicy.parse(["192.168.0.0/16"], ["rtsp"])
    assert lan_only.address_allowed("192.168.7.7")
    assert not lan_only.address_allowed("10.0.0.1") and not lan_only.address_allowed("8.8.8.8")
    metadata = SourcePolicy.parse(["169.254.169.254/32"], ["rtsp"])
    assert metadata.address_allowed("169.254.169.254") and not metadata.address_allowed("169.254.0.1")


@pytest.mark.parametrize("entry", ["nope", "10.0.0.0/33", "", "300.1.1.1", "private,public"])
def test_bad_network_entries_are_errors(entry: str) -> None:
    with pytest.raises(ValueError, match="neither"):
        parse_network(entry)


def fixed(*addresses: str):
    return lambda host, port: list(addresses)


def test_every_resolved_address_is_checked() -> None:
    policy = SourcePolicy.parse(["private", "public"], ["rtsp"], resolver=fixed("8.8.8.8", "127.0.0.1"))
    with pytest.raises(SourceRefused, match=re.escape("127.0.0.1")):
        policy.check("rtsp://camera.example/x")
    ok = SourcePolicy.parse(["private", "public"], ["rtsp"], resolver=fixed("10.0.0.7", "8.8.8.8"))
    assert ok.check("rtsp://camera.example/x") == ["10.0.0.7", "8.8.8.8"]


def test_literal_hosts_are_judged_without_dns_and_names_are_not() -> None:
    def no_dns(host: str, port: int):
        raise AssertionError("resolved")

    policy = SourcePolicy.parse(["private", "public"], ["rtsp", "http"], resolver=no_dns)
    for url in ("rtsp://127.0.0.1/x", "http://[::1]:8080/", "rtsp://[::ffff:127.0.0.1]/", "rtsp://0.0.0.0:554/"):
        with pytest.raises(SourceRefused):
            policy.check(url, resolve=False)
    assert policy.check("rtsp://camera.example/x", resolve=False) == []
    with pytest.raises(SourceRefused, match="scheme"):
        policy.check("ftp://8.8.8.8/x", resolve=False)
    with pytest.raises(SourceRefused, match="bad address"):
        policy.check("rtsp://8.8.8.8:99999/x", resolve=False)


def test_unresolvable_names_are_not_a_policy_verdict() -> None:
    def fails(host: str, port: int):
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(Unresolved):
        SourcePolicy.parse(["public"], ["rtsp"], resolver=fails).check("rtsp://gone.example/x")


def test_dns_rebinding_is_caught_at_the_next_connect_and_ffmpeg_gets_the_checked_address() -> None:
    answers = iter([["203.0.113.9"], ["127.0.0.1"]])
    policy = SourcePolicy.parse(["private", "public", "203.0.113.0/24"], ["rtsp"], resolver=lambda h, p: next(answers))
    assert policy.pin("rtsp://user:pw@cam.example:8554/live?x=1") == "rtsp://user:pw@203.0.113.9:8554/live?x=1"
    with pytest.raises(SourceRefused, match=re.escape("127.0.0.1")):
        policy.pin("rtsp://user:pw@cam.example:8554/live?x=1")
    v6 = SourcePolicy.parse(["public"], ["rtsp"], resolver=fixed("2001:4860::8888"))
    assert v6.pin("rtsp://cam.example/s") == "rtsp://[2001:4860::8888]/s"


# the reader against real servers ------------------------------------------------------------------------


def reader(url: str, policy: SourcePolicy, hooks: ReaderHooks | None = None, **kw) -> Reader:
    r = Reader(url, CONFIG, 10.0, FrameBuffer(64), open_timeout_s=3, read_timeout_s=3, hooks=hooks, policy=policy,
               **kw)  # fmt: skip
    r.start()
    return r


@pytest.fixture
def silent_port() -> Iterator[tuple[int, list]]:
    """A TCP port that accepts connections, records them, and says nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    seen: list = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            seen.append(conn)
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield server.getsockname()[1], seen
    stop.set()
    t.join(2)
    server.close()


class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Files(*a, directory=str(root)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def first_error(r: Reader) -> str:
    try:
        return wait_for(lambda: r.last_error, 20, message="the reader's first error")
    finally:
        r.stop(join=True)


def test_refused_source_is_never_contacted(silent_port) -> None:
    port, seen = silent_port
    r = reader(f"rtsp://127.0.0.1:{port}/x", DEFAULT)
    assert first_error(r) == SOURCE_UNAVAILABLE
    time.sleep(0.5)
    assert seen == [], "the policy refused the address, yet something connected to it"


def test_every_unusable_source_reads_the_same(silent_port, http_dir, tmp_path: Path) -> None:
    """Refused by policy, closed port, a port that answers nothing, an HTTP server with no video: one text,
    so a caller learns nothing about which internal hosts and ports answer. (FFmpeg renders a text file as
    video through its tty demuxer, so an allowed text file goes live: only the policy keeps it out.)"""
    port, seen = silent_port
    base, root = http_dir
    (root / "secret.txt").write_text("internal only\n" * 100)
    (root / "blob.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    errors = {
        "policy": first_error(reader(f"{base}/secret.txt", DEFAULT)),
        "closed port": first_error(reader(f"http://127.0.0.1:{closed}/x", LOOPBACK)),
        "silent port": first_error(reader(f"rtsp://127.0.0.1:{port}/x", LOOPBACK)),
        "not a video": first_error(reader(f"{base}/blob.bin", LOOPBACK)),
        "missing path": first_error(reader(f"{base}/nothing.mp4", LOOPBACK)),
    }
    assert set(errors.values()) == {SOURCE_UNAVAILABLE}, errors
    assert seen, "loopback allowed: the silent port was contacted"


def test_local_paths_are_only_read_where_allowed(h264_clip: Path) -> None:
    """An API stream never reads a server file: without local_ok a path goes to the policy, which refuses it."""
    r = reader(str(h264_clip), LOOPBACK)
    assert first_error(r) == SOURCE_UNAVAILABLE and r.frames_read == 0
    r = reader(str(h264_clip), DEFAULT, local_ok=True)
    try:
        wait_for(lambda: r.frames_read >= 5, 20, message="frames from the local file")
    finally:
        r.stop(join=True)


def test_short_source_backs_off_until_capped_and_recovery_clears_the_error(http_dir, clip_frames) -> None:
    """A source that ends after 6 frames used to be reopened every 0.5 s forever (each session counted as live).
    Now the delay doubles up to the cap, since no session delivered frames for `healthy_s`; and each session
    that goes live again has its predecessor's error cleared."""
    base, root = http_dir
    encode_ffv1(clip_frames[:6], root / "six.avi")
    opens: list[float] = []
    delays: list[float] = []
    errors_when_live: list[str | None] = []
    r: Reader | None = None

    def up(live: bool) -> None:
        if live and r is not None:
            errors_when_live.append(r.last_error)

    hooks = ReaderHooks(reconnect=lambda: opens.append(time.monotonic()), backoff=delays.append, up=up)
    r = reader(f"{base}/six.avi", LOOPBACK, hooks, backoff_initial_s=0.1, backoff_max_s=1.0, healthy_s=5.0)
    try:
        wait_for(lambda: r.backoff_s == 1.0, 20, message="the delay to reach its cap")
        t0, n0 = time.monotonic(), len(opens)
        time.sleep(4.0)
        reopened, window = len(opens) - n0, time.monotonic() - t0
    finally:
        r.stop(join=True)
    waits = [d for d in delays if d]
    assert waits[:4] == [0.1, 0.2, 0.4, 0.8] and set(waits[4:]) == {1.0}, waits
    assert reopened <= window / 1.0 + 1, f"{reopened} reopens in {window:.1f} s with the delay capped at 1 s"
    assert r.frames_read >= 6 * 5, "the source was opened and read again each time"
    assert len(errors_when_live) >= 5 and set(errors_when_live[1:]) == {None}, errors_when_live


class ScriptedReader(Reader):
    """The reconnect loop with sessions of given lengths (seconds of frames delivered) instead of a source."""

    def __init__(self, lengths: list[float], **kw) -> None:
        super().__init__("rtsp://198.51.100.1/x", CONFIG, 10.0, FrameBuffer(4), **kw)
        self.lengths = lengths

    def _session(self) -> str | None:
        length = self.lengths.pop(0) if self.lengths else 0.0
        if not self.lengths:
            self._stop.set()
        self._live_since, self._last_frame = (100.0, 100.0 + length) if length else (None, None)
        return "end of stream"

    def run_here(self) -> None:
        """The reconnect loop on the calling thread, until the scripted sessions run out."""
        self._run()


def test_only_a_healthy_session_resets_the_delay() -> None:
    delays: list[float] = []
    r = ScriptedReader([0, 0, 0, 2.9, 0, 3.0, 0, 0, 0, 0, 0, 0], hooks=ReaderHooks(backoff=delays.append),
                       backoff_initial_s=0.01, backoff_max_s=0.05, healthy_s=3.0)  # fmt: skip
    r.run_here()
    assert [d for d in delays if d] == [0.01, 0.02, 0.04, 0.05, 0.05, 0.01, 0.02, 0.04, 0.05, 0.05, 0.05]
