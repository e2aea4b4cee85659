"""The alert writer: alert rows, their pictures and a stream's calibration, stored on a thread of their own.

The engine thread must only do windows, inference and scores: an SQLite write can wait on the disk and a
JPEG/PNG encode takes milliseconds, and frames pile up behind either (dropped frames at every stream start).
So the engine thread hands its writes here and goes on. One queue, one thread, for the whole service: writes
happen in the order they were handed on (an episode's open, then its peak updates, then its close), and the
messages that announce them are published only after they are stored, so a client that reads an alert's row or
pictures on its `alert_open` finds them; between the two, an alert_open or alert_close goes into the webhook
outbox (`outbox`, service.alerts.webhooks). Stopping drains the queue: nothing handed on is lost at a clean stop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from service.core.messages import AlertClose, AlertOpen, Published

log = logging.getLogger(__name__)

T = TypeVar("T")
Write = Callable[[], object]


@dataclass(slots=True)
class _Task:
    writes: Sequence[Write]
    messages: Published
    done: Future | None = None  # set with the last write's result (`call`)


class AlertWriter:
    def __init__(
        self,
        publish: Callable[[Published], None],
        name: str = "alert-writer",
        outbox: Callable[[AlertOpen | AlertClose], None] | None = None,
    ) -> None:
        self._publish = publish
        self._outbox = outbox  # where alert events go for the webhooks, once stored; None: no webhooks
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()  # submit vs stop: nothing is queued behind the end marker
        self._stopped = False
        self.errors = 0  # writes that raised (logged; the next ones still run)

    def start(self) -> None:
        self._thread.start()

    def submit(self, writes: Sequence[Write], messages: Published = ()) -> None:
        """Run `writes` in order after everything handed on before, then publish `messages`. Any thread."""
        self._put(_Task(writes, list(messages)))

    def call(self, write: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `write` after everything handed on before and return its result (waiting for it): e.g. deleting
        a stream's alerts once its last episode is stored. Not from the writer's own thread."""
        done: Future = Future()
        self._put(_Task([write], [], done))
        return done.result(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything handed on so far is stored and published."""
        self.call(lambda: None, timeout)

    def _put(self, task: _Task) -> None:
        with self._lock:
            if self._stopped:
                log.error("alert writer stopped: %d write(s) not stored", len(task.writes))
                if task.done is not None:
                    task.done.set_exception(RuntimeError("alert writer stopped"))
                return
            self._queue.put(task)

    def stop(self, timeout: float = 30.0) -> None:
        """Store what is queued, then end the thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("alert writer did not drain in %.0f s", timeout)

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            result: object = None
            try:
                for write in task.writes:
                    result = write()
            except Exception as e:  # a failed write must not stop the ones after it
                self.errors += 1
                log.exception("alert write failed")
                if task.done is not None:
                    task.done.set_exception(e)
                continue
            if task.done is not None:
                task.done.set_result(result)
            if task.messages:
                self._to_outbox(task.messages)
                self._publish(task.messages)

    def _to_outbox(self, messages: Published) -> None:
        if self._outbox is None:
            return
        events = {id(m): m for _, m in messages if isinstance(m, (AlertOpen, AlertClose))}  # one per event, not topic
        for message in events.values():
            try:
                self._outbox(message)
            except Exception:  # the WebSocket still gets it; the webhooks miss it (logged, counted)
                self.errors += 1
                log.exception("alert %s's %s not put in the webhook outbox", message.id, message.type)
