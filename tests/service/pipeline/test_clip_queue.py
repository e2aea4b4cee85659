"""Uploaded clips past `max_scoring_clips` wait, queued and in order, instead of each taking a decoder, a thread
and an engine lane at once (a backlog of uploads must not grow the server's memory)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
from fakes import fake_model, moving_block

from service.alerts.machine import AlertPolicy
from service.core.metrics import Metrics
from service.core.store import SqliteStore
from service.pipeline.clips import ClipManager
from service.pipeline.engine import Engine


def write_clip(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()
    return path


class CountingEngine(Engine):
    """The real engine, noting how many clip lanes are open at once and in which order they open."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__(4, 0.0, lambda messages: None)
        self.open, self.most, self.order = 0, 0, []
        self._count = threading.Lock()
        self.fail_first = fail_first  # lanes refused (a bug, or memory running out) before any is given

    def add_lane(self, id, model, capacity, owner, *args):
        with self._count:
            self.open += 1
            self.most = max(self.most, self.open)
            self.order.append(id)
            if len(self.order) <= self.fail_first:
                raise MemoryError("no room for another lane")
        time.sleep(0.05)  # widen the window in which a second job could start
        return super().add_lane(id, model, capacity, owner, *args)

    def remove_lane(self, id):
        with self._count:
            self.open -= 1
        return super().remove_lane(id)


def run_backlog(tmp_path: Path, max_scoring: int, clips: int = 5, fail_first: int = 0) -> tuple[CountingEngine, list]:
    store = SqliteStore(tmp_path / "db.sqlite3")
    engine = CountingEngine(fail_first)
    engine.start()
    manager = ClipManager(tmp_path / "clips", store, engine, Metrics(), lambda messages: None, None, max_scoring)
    model = fake_model()
    frames = moving_block(24)
    jobs = []
    try:
        for i in range(clips):
            id, path = manager.new_path(".avi")
            write_clip(path, frames)
            jobs.append(manager.submit(id, path, f"c{i}.avi", path.stat().st_size, model, AlertPolicy(0.5, 0.4),
                                       10.0, len(frames)))  # fmt: skip
        deadline = time.monotonic() + 60  # the row is written just after the job's finished event
        while any(store.clip(job.id)["status"] in ("queued", "running") for job in jobs):
            assert time.monotonic() < deadline, [store.clip(job.id)["status"] for job in jobs]
            time.sleep(0.05)
        return engine, [(job, store.clip(job.id)) for job in jobs]
    finally:
        engine.stop()
        store.close()


def test_a_backlog_is_scored_one_at_a_time_in_order_and_completely(tmp_path: Path) -> None:
    engine, results = run_backlog(tmp_path, max_scoring=1)
    assert engine.most == 1
    assert engine.order == [f"clip:{job.id}" for job, _ in results]
    for job, row in results:
        assert job.status == "done" and row["status"] == "done"
        assert len(job.scores) == job.expected_scores


def test_the_limit_is_a_limit_not_a_serialization(tmp_path: Path) -> None:
    engine, results = run_backlog(tmp_path, max_scoring=3, clips=6)
    assert 1 < engine.most <= 3
    assert all(row["status"] == "done" for _, row in results)


def test_a_job_that_crashes_fails_with_its_reason_and_frees_its_slot(tmp_path: Path) -> None:
    """Not a decoder error: anything raised in a job's thread. It must not stay 'running' holding the only
    scoring slot, or every later upload would wait forever."""
    _, results = run_backlog(tmp_path, max_scoring=1, clips=3, fail_first=1)
    (first, first_row), *rest = results
    assert first.status == first_row["status"] == "failed"
    assert first.error == "internal error after 0 frames (MemoryError: no room for another lane)"
    assert [row["status"] for _, row in rest] == ["done", "done"]
