"""PostgresStore on a real PostgreSQL: epoch fencing, checkpoints, alerts written once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.cluster


@pytest.fixture
def store(pg_dsn: str):
    from service.cluster.store import PostgresStore

    s = PostgresStore(pg_dsn)
    yield s
    s.close()


def checkpoint(stream: str, epoch: int, frame: int, episode=None):
    from service.cluster.store import Checkpoint

    items = np.arange(20, dtype=np.float32).reshape(10, 2) + frame
    return Checkpoint(stream, epoch, frame, items, episode, time.time())


def test_epochs_fence_writes_of_a_moved_camera(store) -> None:
    from service.cluster.store import StaleEpoch

    assert store.assign("cam", "shard-a") == 1
    store.checkpoint(checkpoint("cam", 1, 10))
    assert store.assign("cam", "shard-b") == 2  # moved: shard-a's epoch 1 is stale now
    with pytest.raises(StaleEpoch):
        store.checkpoint(checkpoint("cam", 1, 11))
    with pytest.raises(StaleEpoch):
        store.open_alert_fenced("cam", 1, store.reserve_alert_id(), "m", 1.0, 11, 0.9, 11,
                                checkpoint("cam", 1, 11, {"id": None}))  # fmt: skip
    saved = store.load_checkpoint("cam")
    assert saved.frame == 10 and saved.epoch == 1  # the stale writes changed nothing
    assert store.alerts(None, None, None, 10, 0)[1] == 0
    assert [r["what"] for r in store.refused()] == ["checkpoint", "open_alert"]
    store.checkpoint(checkpoint("cam", 2, 12))
    assert store.load_checkpoint("cam").frame == 12


def test_alert_and_its_checkpoint_land_together_and_close_once(store) -> None:
    store.assign("cam", "a")
    episode = {"start_frame": 5, "start_time": 1.0, "peak_score": 0.9, "peak_frame": 6, "id": None}
    alert = store.reserve_alert_id()
    store.open_alert_fenced("cam", 1, alert, "m", 1.0, 5, 0.9, 6, checkpoint("cam", 1, 7, episode))
    saved = store.load_checkpoint("cam")
    assert saved.episode["id"] == alert and saved.frame == 7
    np.testing.assert_array_equal(saved.items, checkpoint("cam", 1, 7).items)
    store.close_alert_fenced("cam", 1, alert, 2.0, 9, 0.95, 8, checkpoint("cam", 1, 19))
    store.close_alert_fenced("cam", 1, alert, 3.0, 12, 0.99, 8, checkpoint("cam", 1, 20))  # closed once
    row = store.alert(alert)
    assert (row["end_frame"], row["end_time"], row["epoch"]) == (9, 2.0, 1)
    assert store.load_checkpoint("cam").episode is None


def test_a_move_waits_for_a_fenced_write_in_flight(store, pg_dsn: str) -> None:
    """The assignment row is held FOR SHARE during a fenced write, so the move is ordered after it."""
    from service.cluster.store import PostgresStore

    store.assign("cam", "a")
    other = PostgresStore(pg_dsn)
    with store.fenced_transaction("cam", 1, "test"):
        moved = threading.Thread(target=other.assign, args=("cam", "b"))
        moved.start()
        moved.join(0.5)
        assert moved.is_alive(), "the move did not wait for the write in flight"
        store.checkpoint(checkpoint("cam", 1, 3))
    moved.join(10)
    assert store.assignments()["cam"]["epoch"] == 2 and store.load_checkpoint("cam").frame == 3
    other.close()


def test_postgres_store_is_the_store_interface(store) -> None:
    """Every operation of service.core.store.Store, with its signature (as tests/service/test_seams.py checks
    SQLite's); ids from the sequence are never given twice."""
    import inspect

    from service.core.store import Store

    for name, member in vars(Store).items():
        if callable(member) and not name.startswith("_"):
            assert str(inspect.signature(getattr(type(store), name))) == str(inspect.signature(member)), name
    assert isinstance(store, Store)
    ids = [store.reserve_alert_id() for _ in range(3)]
    store.open_alert(ids[1], "s", "m", 1.0, 0, 0.9, 0)
    assert ids == sorted(set(ids)) and store.alert(ids[1])["stream_id"] == "s" and store.reserve_alert_id() > ids[-1]


def test_the_shared_sql_answers_alike_on_both_dialects(store, tmp_path) -> None:
    """SqlStore's queries (written once, `?` translated for psycopg) give PostgreSQL the rows SQLite gives."""
    from service.core.store import SqliteStore

    def exercise(s) -> list:
        s.add_stream("s1", "rtsp://a", "one", "m", None, {"on": 0.5})
        s.set_calibration("s1", "m", {"a": 1}, 1.0)
        s.set_calibration("s1", "m", {"a": 2}, 2.0)  # replaces
        s.set_mask("s1", [[[0, 0], [1, 0], [1, 0.5]]])
        s.set_mask("s1", [[[0, 0], [0.5, 0], [0.5, 0.5]], [[0.9, 0.9], [1, 0.9], [1, 1]]])  # replaces
        s.set_mask("s2", [[[0, 0], [1, 0], [1, 0.5]]])
        s.set_mask("s2", [])  # removes
        ids = [s.reserve_alert_id() for _ in range(3)]
        for i, id in enumerate(ids):
            s.open_alert(id, "s1", "m", 10.0 + i, i, 0.5, i)
        s.update_alert_peak(ids[0], 0.9, 7)
        s.close_alert(ids[0], 11.0, 8, 0.9, 7, "why")
        snapshots = [s.set_alert_snapshot(ids[0], "t.jpg", None), s.set_alert_snapshot(10**6, "t.jpg", None)]
        closed = s.close_open_alerts(11.5, "restarted")  # one ends at its start (12.0 > 11.5), one at 11.5
        for id, status in (("c1", "queued"), ("c2", "running"), ("c3", "done")):
            s.add_clip(id, f"{id}.avi", None, 10, "m")
            s.set_clip_status(id, status)
        page, total = s.alerts("s1", 10.5, None, 2, 0)
        reviewed = [s.review_alert(ids[1], "false_alarm", 20.0), s.review_alert(ids[2], "confirmed", 21.0),
                    s.review_alert(ids[2], None, 22.0), s.review_alert(10**6, "confirmed", 23.0)]  # fmt: skip
        by_verdict = [sorted(r["id"] for r in s.alerts(None, None, None, 10, 0, v)[0]) for v in
                      ("false_alarm", "confirmed", "unreviewed")]  # fmt: skip
        deleted = s.delete_alerts(keep=1)
        rel = {id: n for n, id in enumerate(ids)}  # the dialects number alerts differently
        return [
            [{k: v for k, v in r.items() if k != "created"} for r in s.streams()], s.stream("nope"),
            s.calibration("s1")["calibration"], s.mask("s1"), s.mask("s2"), s.mask("nope"), snapshots, closed,
            s.open_alert_count(), total,
            [(r["verdict"], r["reviewed_at"]) if r else None for r in reviewed],
            [[rel[i] for i in v] for v in by_verdict],
            [(rel[r["id"]], r["end_time"], r["end_frame"], r["closed_reason"]) for r in page],
            sorted((rel[r["id"]], r["thumbnail"]) for r in deleted), sorted(rel[i] for i in s.alert_ids()),
            sorted(r["id"] for r in s.clips_in(("queued", "done"))), s.clips_in(()), s.clip_counts(),
            sorted(s.clip_ids()), len(s.clips(2)), s.clip("c3")["finished"] is not None,
        ]  # fmt: skip

    sqlite = SqliteStore(tmp_path / "db.sqlite3")
    assert exercise(store) == exercise(sqlite)
    sqlite.close()


def test_the_webhook_outbox_answers_alike_and_one_connection_holds_a_url_at_a_time(store, pg_dsn, tmp_path) -> None:
    """The outbox's SQL on both dialects: a new URL's cursor starts at the newest event, events come in order
    after the cursor with their age on the database's clock, the lease keeps a second holder out until it is
    handed back or runs out; on PostgreSQL the second holder is another connection (another API node)."""
    from service.cluster.store import PostgresStore
    from service.core.store import SqliteStore

    def exercise(s, other) -> list:
        s.add_webhook_event("g:1:alert_open", "alert_open", '{"id": 1}', 60)
        start = s.claim_webhook("r", "a", 30)  # made at the newest event: 1 is history
        for i in (2, 3, 4):
            s.add_webhook_event(f"g:{i}:alert_open", "alert_open", f'{{"id": {i}}}', 60)
        after = s.webhook_events_after(start, 0.0, 2)
        rows = [(r["id"] - start, r["delivery"], r["body"]) for r in after]
        ages_ok = all(0 <= r["age"] < 5 for r in after)
        settling = s.webhook_events_after(start, 5.0, 10)  # none is 5 s old yet
        held = [other.claim_webhook("r", "b", 30), other.advance_webhook("r", "b", start + 3, 30)]
        moved = s.advance_webhook("r", "a", after[-1]["id"], 30)
        backlog = s.webhook_backlog(after[-1]["id"])
        s.release_webhook("r", "a")
        taken = other.claim_webhook("r", "b", 30)
        lapsed = [s.claim_webhook("r2", "a", -1) is not None, other.claim_webhook("r2", "b", 30) is not None]
        return [start - start, rows, ages_ok, settling, held, moved, backlog, taken - start, lapsed]

    other = PostgresStore(pg_dsn)
    sqlite = SqliteStore(tmp_path / "db.sqlite3")
    assert exercise(store, other) == exercise(sqlite, sqlite) == [
        0, [(1, "g:2:alert_open", '{"id": 2}'), (2, "g:3:alert_open", '{"id": 3}')], True, [], [None, False], True,
        1, 2, [True, True],
    ]  # fmt: skip
    other.close()
    sqlite.close()
