"""Unit tests of the small stages: frame buffer, fps sampling, sliding window, alert state machine."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.alerts.machine import AlertMachine, AlertPolicy
from service.capture.buffer import Frame, FrameBuffer
from service.capture.windows import FpsSampler, SlidingWindow, keeps_every_frame


def frame(i: int, segment: int = 0) -> Frame:
    return Frame(i, segment, float(i), np.full((2, 3, 1), i, np.uint8))


def test_buffer_drops_oldest_and_counts() -> None:
    woken = []
    buf = FrameBuffer(3, on_ready=lambda: woken.append(1))
    for i in range(10):
        buf.put(frame(i))
    assert len(buf) == 3 and buf.dropped == 7 and len(woken) == 10
    assert [buf.pop().index for _ in range(3)] == [7, 8, 9]
    assert buf.pop() is None


def test_buffer_marks_the_frame_after_a_hole() -> None:
    buf = FrameBuffer(2)
    for i in range(4):  # 0 and 1 are dropped: 2 follows a hole, 3 follows 2
        buf.put(frame(i))
    got = [buf.pop() for _ in range(2)]
    assert [(f.index, f.after_gap) for f in got] == [(2, True), (3, False)]
    buf.put(frame(4))
    assert not buf.pop().after_gap  # nothing was lost between 3 and 4
    one = FrameBuffer(1)
    one.put(frame(0))
    one.put(frame(1))
    assert one.pop().after_gap


def test_buffer_keeps_a_connect_burst_and_cuts_a_growing_backlog_at_the_lag_budget() -> None:
    buf = FrameBuffer(48, max_lag_s=0.45)
    for i in range(30):  # a camera's connect burst: 3 s of video handed over within 30 ms
        buf.put(Frame(i, 0, 100.0 + i * 0.001, np.zeros((2, 3, 1), np.uint8)))
    assert len(buf) == 30 and buf.dropped == 0  # the engine drains it in a fraction of a second
    while buf.pop() is not None:
        pass
    for i in range(10):  # then the engine stalls while frames keep coming at 10 fps
        buf.put(Frame(30 + i, 0, 101.0 + i / 10, np.zeros((2, 3, 1), np.uint8)))
    waiting = [buf.pop() for _ in range(len(buf))]
    assert [f.index for f in waiting] == [35, 36, 37, 38, 39]  # none more than 0.45 s older than the newest
    assert buf.dropped == 5 and waiting[0].after_gap and not any(f.after_gap for f in waiting[1:])
    with pytest.raises(ValueError):
        FrameBuffer(4, max_lag_s=0)


def test_buffer_blocking_waits_for_room_and_loses_nothing() -> None:
    buf = FrameBuffer(2)
    got: list[int] = []

    def consume() -> None:
        while len(got) < 50:
            f = buf.pop()
            if f is not None:
                got.append(f.index)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        assert buf.put(frame(i), block=True, timeout=5)
    t.join(5)
    assert got == list(range(50)) and buf.dropped == 0


def test_buffer_blocking_put_returns_false_when_closed() -> None:
    buf = FrameBuffer(1)
    buf.put(frame(0))
    buf.close()
    assert buf.put(frame(1), block=True, timeout=1) is False


def kept(sampler: FpsSampler, times) -> list[int]:
    return [i for i, t in enumerate(times) if sampler.keep(t)]


def test_sampler_downsamples_by_source_time() -> None:
    assert kept(FpsSampler(10), [i / 30 for i in range(30)]) == list(range(0, 30, 3))


def test_sampler_keeps_every_frame_at_equal_rate_despite_jitter() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(100) / 10 + rng.uniform(-0.015, 0.015, 100)
    assert kept(FpsSampler(10), times) == list(range(100))


def test_sampler_keeps_all_of_a_slower_source_and_resyncs_after_gap() -> None:
    assert kept(FpsSampler(10), [i / 5 for i in range(10)]) == list(range(10))
    s = FpsSampler(10)
    assert kept(s, [0.0, 0.1, 5.0, 5.1, 5.13, 5.2]) == [0, 1, 2, 3, 5]


def test_sliding_window_is_ordered_and_resets_on_new_segment() -> None:
    w = SlidingWindow(3, (2, 3, 1))
    assert w.push(frame(0).pixels) is None and w.push(frame(1).pixels) is None
    for i in range(2, 9):
        out = w.push(frame(i).pixels)
        assert out.shape == (3, 2, 3, 1) and out.flags.c_contiguous
        assert [int(x[0, 0, 0]) for x in out] == [i - 2, i - 1, i]
    assert w.push(frame(9).pixels, segment=1) is None  # a reconnect: no window across the gap
    w.push(frame(10).pixels, segment=1)
    assert [int(x[0, 0, 0]) for x in w.push(frame(11).pixels, segment=1)] == [9, 10, 11]


def run(machine: AlertMachine, scores):
    return [(i, e[0], e[1].start_frame, e[1].end_frame, e[1].peak_score)
            for i, s in enumerate(scores) if (e := machine.update(i, float(i), s))]  # fmt: skip


def test_alert_hysteresis_opens_after_n_and_closes_after_m() -> None:
    m = AlertMachine(AlertPolicy(on=0.8, off=0.5, on_frames=3, off_frames=2))
    scores = [0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.95, 0.6, 0.4, 0.7, 0.4, 0.4, 0.4, 0.9]
    events = run(m, scores)
    # a 2-frame blip (1-2) does not open; 4-6 does, starting at 4; 0.6 and 0.7 keep it open
    # (above off); it closes after two frames below 0.5 (11, 12), ending at frame 9
    assert events == [(6, "open", 4, None, 0.95), (11, "close", 4, 9, 0.95)]
    assert m.episode is None


def test_alert_flush_closes_open_episode() -> None:
    m = AlertMachine(AlertPolicy(on=0.5, off=0.5, on_frames=1, off_frames=5))
    run(m, [0.9, 0.7])
    kind, ep = m.flush()
    assert kind == "close" and (ep.start_frame, ep.end_frame, ep.peak_score) == (0, 1, 0.9)
    assert m.flush() is None


def test_alert_policy_rejects_off_above_on() -> None:
    with pytest.raises(ValueError):
        AlertPolicy(on=0.5, off=0.6)


def test_a_source_no_faster_than_the_model_keeps_every_frame() -> None:
    """One rule for live sources and uploads: up to 1.1x the model's rate every frame is scored (jitter must not
    cost frames); faster sources, and sources that record no rate, are sampled."""
    assert keeps_every_frame(10.0, 10.0) and keeps_every_frame(11.0, 10.0) and keeps_every_frame(5.0, 10.0)
    assert not keeps_every_frame(11.5, 10.0) and not keeps_every_frame(30.0, 10.0)
    assert not keeps_every_frame(None, 10.0)
