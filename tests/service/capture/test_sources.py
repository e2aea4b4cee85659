"""Readers against real servers: a camera that is off, unreachable or hung must not hold the others' connects
(OpenCV opens one source at a time, see `reach` in service/capture/sources.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from support import wait_for

from model.network import ModelConfig
from service.capture.buffer import FrameBuffer
from service.capture.sources import Reader, reach
from service.core.policy import SOURCE_UNAVAILABLE, SourcePolicy

CONFIG = ModelConfig(base_width=4, height=32, width=48)
LOCAL = SourcePolicy.parse(["127.0.0.0/8"], ["rtsp"])


@pytest.fixture
def unreachable_port() -> Iterator[int]:
    """A port whose connects hang like an unreachable host's: a listener with a full accept queue, whose
    kernel drops further SYNs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the queue (its length is backlog + 1); connects beyond it hang
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    yield port
    for s in fillers:
        s.close()
    server.close()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A camera that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture(params=["unreachable", "hung"])
def dead_port(request) -> int:
    return request.getfixturevalue(f"{request.param}_port")


def test_reach_fails_in_time_for_a_dead_camera(dead_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(OSError):
        reach(f"rtsp://127.0.0.1:{dead_port}/cam", 1.0)
    assert time.monotonic() - started < 2.0


def test_reach_accepts_a_real_rtsp_server_with_credentials_in_the_url(rtsp_factory, h264_clip) -> None:
    url = rtsp_factory(h264_clip).url
    reach(url.replace("rtsp://", "rtsp://user:secret@"), 5.0)


def test_a_dead_camera_does_not_hold_another_cameras_connect(dead_port: int, rtsp_factory, h264_clip) -> None:
    dead = Reader(f"rtsp://127.0.0.1:{dead_port}/cam", CONFIG, 10.0, FrameBuffer(4), open_timeout_s=5,
                  read_timeout_s=5, policy=LOCAL)  # fmt: skip
    good = Reader(rtsp_factory(h264_clip).url, CONFIG, 10.0, FrameBuffer(64), open_timeout_s=5, read_timeout_s=5,
                  policy=LOCAL)  # fmt: skip
    dead.start()
    time.sleep(0.3)  # the dead camera is connecting when the good one starts
    started = time.monotonic()
    good.start()
    try:
        wait_for(lambda: good.state == "live", 10, interval=0.05, message="the good camera live")
        # without the check outside OpenCV's lock the good camera waited for the dead one's 5 s timeout
        assert time.monotonic() - started < 3.0
        wait_for(lambda: dead.last_error == SOURCE_UNAVAILABLE, 10, message="the dead camera reported")
    finally:
        dead.stop(join=True)
        good.stop(join=True)


def test_a_reader_that_raises_reports_it_and_reconnects(h264_clip, monkeypatch) -> None:
    """Anything a session raises (here the frame preparation, twice) is the stream's error and a reconnect, as a
    decoder error is: the reader's thread must not die and leave the stream looking live with no frames."""
    from service.capture import sources

    calls = {"n": 0}
    real = sources.preprocess

    def flaky(image, config):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ValueError("an odd frame")
        return real(image, config)

    monkeypatch.setattr(sources, "preprocess", flaky)
    errors: list[str] = []
    buffer = FrameBuffer(64)
    reader = Reader(str(h264_clip), CONFIG, 10.0, buffer, open_timeout_s=5, read_timeout_s=5, local_ok=True,
                    backoff_initial_s=0.05)  # fmt: skip
    reader.hooks.backoff = lambda delay: delay > 0 and errors.append(reader.last_error)  # the error, then its wait
    reader.start()
    try:
        wait_for(lambda: len(buffer) >= 3, 20, interval=0.05, message="frames after the failures")
    finally:
        reader.stop(join=True)
    assert reader.reconnects == 2 and errors == ["reader error: ValueError: an odd frame"] * 2
    assert reader.last_error is None  # recovered
