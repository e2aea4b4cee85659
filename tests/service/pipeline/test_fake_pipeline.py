"""The engine, streams and alerts on the fake model (tests/service/fakes.py): fast, deterministic, no Ped2.

What runs is the service's own code, engine thread and alert writer included; only the network's forward is
replaced by one whose scores are known: still frames score low, a moving block high."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fakes import fake_model, moving_block, still_frames

from service.alerts.machine import AlertPolicy
from service.alerts.snapshots import AlertSnapshots
from service.alerts.writer import AlertWriter
from service.capture.buffer import Frame
from service.core.messages import AlertClose, AlertOpen, ClipState, Published, StreamScore
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.core.store import SqliteStore
from service.pipeline.clips import ClipManager
from service.pipeline.engine import Engine, Scored
from service.pipeline.streams import StreamManager


def score_all(frames: np.ndarray) -> list[Scored]:
    """Every frame through one lane of a real engine thread."""
    model = fake_model()
    rows: list[Scored] = []
    expected = len(frames) - model.config.window + 1
    done = threading.Event()

    class Owner:
        def on_scored(self, s: Scored) -> Published:
            rows.append(s)
            if len(rows) == expected:
                done.set()
            return []

    engine = Engine(4, 0.0, lambda messages: None)
    engine.start()
    try:
        lane = engine.add_lane("l", model, 4, Owner())
        for i, pixels in enumerate(frames):
            assert lane.buffer.put(Frame(i, 0, float(i), pixels), block=True, timeout=10)
        assert done.wait(30)
    finally:
        engine.stop()
    return rows


def test_engine_scores_still_frames_low_and_motion_high_reproducibly() -> None:
    still, moving = score_all(still_frames(8)), score_all(moving_block(8))
    assert [s.frame.index for s in still] == list(range(2, 8))  # a window of 2 past frames + the target
    assert max(s.score for s in still) < 0.1 < 0.5 < min(s.score for s in moving)
    assert all(s.error is not None and s.error.shape == (32, 48) for s in moving)
    assert max(s.error.max() for s in still) == 0.0 and min(s.error.max() for s in moving) > 0.5
    again = score_all(moving_block(8))
    assert [s.score for s in again] == [s.score for s in moving]


def write_clip(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """An MJPG AVI of (n, H, W, 1) frames, upscaled 4x: a local file the real reader plays as a camera."""
    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w * 4, h * 4))
    assert out.isOpened()
    for f in frames:
        out.write(cv2.cvtColor(cv2.resize(f, (w * 4, h * 4), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR))
    out.release()
    return path


class ThreadRecordingStore(SqliteStore):
    """SqliteStore that notes which thread ran each alert write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: list[tuple[str, str]] = []

    def open_alert(self, *args, **kwargs) -> None:
        self.threads.append(("open", threading.current_thread().name))
        super().open_alert(*args, **kwargs)

    def update_alert_peak(self, *args, **kwargs) -> None:
        self.threads.append(("peak", threading.current_thread().name))
        super().update_alert_peak(*args, **kwargs)

    def close_alert(self, *args, **kwargs) -> None:
        self.threads.append(("close", threading.current_thread().name))
        super().close_alert(*args, **kwargs)

    def set_alert_snapshot(self, *args, **kwargs) -> bool:
        self.threads.append(("picture", threading.current_thread().name))
        return super().set_alert_snapshot(*args, **kwargs)


@pytest.fixture
def live(tmp_path: Path):
    """A StreamManager on a real engine and alert writer, the fake model, and what the writer published."""
    store = ThreadRecordingStore(tmp_path / "db.sqlite3")
    published: Published = []
    writer = AlertWriter(published.extend)
    engine = Engine(4, 0.0, published.extend)
    snapshots = AlertSnapshots(tmp_path / "alerts", store)
    settings = Settings(_env_file=None, data_dir=tmp_path, alert_on_frames=2, alert_off_frames=2)
    manager = StreamManager(settings, store, engine, Metrics(), writer, snapshots)
    writer.start()
    engine.start()
    yield SimpleNamespace(manager=manager, store=store, writer=writer, engine=engine, published=published,
                          snapshots=snapshots)  # fmt: skip
    manager.stop_all()
    engine.stop()
    writer.stop()
    store.close()


def wait(condition, seconds: float = 30.0) -> None:
    done = threading.Event()
    for _ in range(int(seconds * 20)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError("timed out")


def test_alerts_are_stored_off_the_engine_thread_in_order_and_announced_once_stored(live, tmp_path: Path) -> None:
    """A still scene with a block crossing it now and then (the file loops): episodes open and close; every alert
    row and picture write runs on the alert writer, never on the engine thread; per episode the writes come
    open, peak updates, close; each alert message is published after its row and pictures are stored."""
    frames = np.concatenate([still_frames(10), moving_block(6), still_frames(10)])
    clip = write_clip(tmp_path / "scene.avi", frames)
    stream = live.manager.start(str(clip), "scene", fake_model(), origin="cli", persist=False)
    wait(lambda: any(isinstance(m, AlertClose) for _, m in list(live.published)))
    live.manager.stop_all()
    live.writer.flush()
    assert {name for _, name in live.store.threads} == {"alert-writer"}
    kinds = [kind for kind, _ in live.store.threads if kind != "picture"]
    first_close = kinds.index("close")
    assert kinds[0] == "open" and set(kinds[1:first_close]) <= {"peak"}
    opened = next(m for t, m in live.published if isinstance(m, AlertOpen) and t == "alerts")
    closed = next(m for t, m in live.published if isinstance(m, AlertClose) and t == "alerts")
    assert opened.id == closed.id and opened.stream == stream.id and opened.thumbnail_url is not None
    row = live.store.alert(opened.id)
    assert row["end_frame"] == closed.end_frame and row["peak_frame"] == closed.peak_frame
    assert live.snapshots.path(row["thumbnail"]) is not None and live.snapshots.path(row["heatmap"]) is not None
    scores = [m for t, m in live.published if isinstance(m, StreamScore)]
    assert scores and any(m.in_alert for m in scores) and not scores[0].in_alert


def test_deleting_a_stream_in_an_episode_leaves_no_row_picture_or_write_behind(live, tmp_path: Path) -> None:
    """Deleted while an episode is open and the engine scores it: the episode's writes and the deletion are
    ordered by the writer, so nothing of the stream is stored after the delete returns."""
    clip = write_clip(tmp_path / "busy.avi", moving_block(40))  # motion all the time: one long episode
    stream = live.manager.start(str(clip), "busy", fake_model(), origin="cli", persist=False)
    wait(lambda: live.store.alert_ids())
    wait(lambda: list(live.snapshots.directory.iterdir()))
    live.manager.delete(stream.id)
    live.writer.flush()
    assert live.store.alert_ids() == set() and list(live.snapshots.directory.iterdir()) == []
    assert live.store.calibration(stream.id) is None


def test_a_clean_stop_closes_the_open_episode_with_its_reason(live, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "busy.avi", moving_block(40))
    live.manager.start(str(clip), "busy", fake_model(), origin="cli", persist=False)
    wait(lambda: live.store.alert_ids())
    live.manager.stop_all()
    live.engine.stop()
    assert live.manager.close_episodes("service stopped") == 1
    live.writer.stop()  # drains: the close is stored before the store closes
    (row,) = live.store.alerts(None, None, None, 10, 0)[0]
    assert row["end_time"] is not None and row["closed_reason"] == "service stopped"
    assert live.store.open_alert_count() == 0


def test_an_uploads_segments_are_placed_in_the_video_not_the_servers_clock(tmp_path: Path) -> None:
    """A 20 fps upload scored by a 10 fps model (every other frame kept): its segment's times are seconds into
    the video (decoded frame / 20), whenever the server got to it, and its summary is the typed one."""
    frames = np.concatenate([still_frames(30), moving_block(12), still_frames(30)])
    store = SqliteStore(tmp_path / "db.sqlite3")
    engine = Engine(4, 0.0, lambda messages: None)
    engine.start()
    manager = ClipManager(tmp_path / "clips", store, engine, Metrics(), lambda messages: None, None)
    try:
        id, path = manager.new_path(".avi")
        write_clip(path, frames, fps=20.0)
        job = manager.submit(id, path, "scene.avi", path.stat().st_size, fake_model(), AlertPolicy(0.5, 0.4, 2, 2),
                             20.0, len(frames))  # fmt: skip
        assert job.finished.wait(30) and job.status == "done"
    finally:
        engine.stop()
        store.close()
    summary = ClipState.model_validate(job.describe(scores=False)).summary
    (segment,) = summary.anomalous_segments
    assert 30 <= segment.start_frame < segment.end_frame < 44 and segment.start_frame % 2 == 0
    assert segment.start_time == segment.start_frame / 20.0 and segment.end_time == segment.end_frame / 20.0
    assert summary.threshold_on == 0.5 and summary.warnings == []
