"""The alert writer (service.alerts.writer): writes in the order handed on, messages only after their writes,
a failed write does not stop the next ones, and stopping stores everything queued."""

from __future__ import annotations

import threading
import time

import pytest

from service.alerts.writer import AlertWriter
from service.core.messages import AlertClose, AlertOpen, Dropped, Published


def note(topic: str) -> Published:
    return [(topic, Dropped(topic=topic, dropped=1, total_dropped=1))]


def test_writes_run_in_order_on_the_writer_thread_and_messages_follow_them() -> None:
    done: list[tuple[int, str]] = []
    seen: list[tuple[str, int]] = []  # (topic, writes done when it was published)
    writer = AlertWriter(lambda messages: seen.extend((t, len(done)) for t, _ in messages))
    writer.start()
    caller = threading.current_thread().name
    for i in range(50):
        writer.submit([lambda i=i: done.append((i, threading.current_thread().name))], note(f"t{i}"))
    writer.flush()
    assert [i for i, _ in done] == list(range(50))
    assert {name for _, name in done} == {"alert-writer"} != {caller}
    assert seen == [(f"t{i}", i + 1) for i in range(50)]  # each message after its own write, none before
    writer.stop()


def test_a_failed_write_is_counted_its_messages_dropped_and_the_next_ones_run() -> None:
    done: list[int] = []
    seen: Published = []
    writer = AlertWriter(seen.extend)
    writer.start()

    def fail() -> None:
        raise OSError("disk full")

    writer.submit([fail, lambda: done.append(1)], note("lost"))  # the rest of a failed task is skipped
    writer.submit([lambda: done.append(2)], note("kept"))
    assert writer.call(lambda: 42) == 42
    assert done == [2] and [t for t, _ in seen] == ["kept"] and writer.errors == 1
    with pytest.raises(OSError, match="disk full"):
        writer.call(fail)
    writer.stop()


def test_stop_stores_everything_queued_and_later_writes_are_refused(caplog) -> None:
    done: list[int] = []
    writer = AlertWriter(lambda messages: None)
    writer.start()
    gate = threading.Event()
    writer.submit([gate.wait])  # the writer is busy: everything below queues behind it
    for i in range(20):
        writer.submit([lambda i=i: (time.sleep(0.001), done.append(i))])
    threading.Timer(0.2, gate.set).start()
    writer.stop()
    assert done == list(range(20))
    writer.submit([lambda: done.append(99)])
    assert done == list(range(20)) and "not stored" in caplog.text
    with pytest.raises(RuntimeError, match="stopped"):
        writer.call(lambda: None)


def test_a_stored_alert_goes_into_the_webhook_outbox_once_before_it_is_published() -> None:
    """An alert message is published on two topics (its stream's and the alerts topic) but is one event for the
    webhooks; it enters the outbox after its writes and before any subscriber can see it, and not at all when
    its write failed; an outbox that fails costs the webhooks that event (counted), not the WebSocket."""
    log: list[str] = []
    writer = AlertWriter(lambda messages: log.extend(f"published {m.type} {m.id}" for _, m in messages),
                         outbox=lambda m: log.append(f"outbox {m.type} {m.id}"))  # fmt: skip
    writer.start()
    open_ = AlertOpen(stream="gate", name="gate", id=7, start_frame=1, start_time=0.0, end_frame=None, end_time=None,
                      peak_score=0.9, peak_frame=1, thumbnail_url=None, heatmap_url=None)  # fmt: skip
    close = AlertClose(**{**open_.model_dump(exclude={"type", "seq"}), "id": 8})

    def fail() -> None:
        raise OSError("disk full")

    writer.submit([lambda: log.append("stored 7")], [("stream:gate", open_), ("alerts", open_)])
    writer.submit([fail], [("stream:gate", close), ("alerts", close)])
    writer.flush()
    assert log == ["stored 7", "outbox alert_open 7", "published alert_open 7", "published alert_open 7"]
    broken = AlertWriter(lambda messages: log.extend(f"published {m.id}" for _, m in messages),
                         outbox=lambda m: 1 / 0)  # fmt: skip
    broken.start()
    broken.submit([], [("alerts", open_)])
    broken.flush()
    assert log[-1] == "published 7" and broken.errors == 1
    writer.stop()
    broken.stop()
