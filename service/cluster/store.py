"""PostgreSQL as the store of cluster mode: what SQLite holds for one process (streams, calibrations, alerts,
clips), plus what must survive a node: which shard runs each camera under which epoch, and a checkpoint of
each camera's memory items, frame index and open episode.

Epoch fencing: the coordinator bumps a camera's epoch each time it assigns the camera. Every write a shard
makes for a camera names the epoch it was given and runs in a transaction that first reads the assignment
row FOR SHARE: a write under an older epoch is refused (StaleEpoch), and a move waits for a write in flight,
so nothing a cut-off worker does after its camera moved can land.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from service.core.store import SqlStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    fps_cap DOUBLE PRECISION, alerts TEXT NOT NULL, created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS calibrations (
    stream_id TEXT PRIMARY KEY, model TEXT NOT NULL, calibration TEXT NOT NULL, fitted_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS masks (
    stream_id TEXT PRIMARY KEY, polygons TEXT NOT NULL, set_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, model TEXT NOT NULL,
    start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION, start_frame BIGINT NOT NULL,
    end_frame BIGINT, peak_score DOUBLE PRECISION NOT NULL, peak_frame BIGINT NOT NULL,
    thumbnail TEXT, heatmap TEXT, closed_reason TEXT, epoch BIGINT, verdict TEXT, reviewed_at DOUBLE PRECISION
);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS verdict TEXT;  -- an operator's review, added after v0.1
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS reviewed_at DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS alerts_stream_time ON alerts (stream_id, start_time);
CREATE TABLE IF NOT EXISTS clips (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, original_name TEXT, size BIGINT NOT NULL,
    model TEXT NOT NULL, status TEXT NOT NULL, error TEXT, created DOUBLE PRECISION NOT NULL,
    finished DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS webhook_events (
    id BIGSERIAL PRIMARY KEY, delivery TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_cursors (
    receiver TEXT PRIMARY KEY, last_id BIGINT NOT NULL, holder TEXT, lease_until DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS camera_requests (
    stream_id TEXT PRIMARY KEY, kind TEXT NOT NULL, seconds DOUBLE PRECISION, at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS calibration_states (
    stream_id TEXT PRIMARY KEY, state TEXT NOT NULL, at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    stream_id TEXT PRIMARY KEY, shard TEXT NOT NULL, epoch BIGINT NOT NULL, assigned DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    stream_id TEXT PRIMARY KEY, epoch BIGINT NOT NULL, frame BIGINT NOT NULL, items BYTEA NOT NULL,
    shape TEXT NOT NULL, episode TEXT, saved DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS restores (
    id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, epoch BIGINT NOT NULL, shard TEXT NOT NULL,
    frame BIGINT NOT NULL, items_sha256 TEXT NOT NULL, episode_id BIGINT, at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS moves (
    id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, from_shard TEXT, to_shard TEXT NOT NULL,
    epoch BIGINT NOT NULL, reason TEXT NOT NULL, lost_at DOUBLE PRECISION, at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
    name TEXT PRIMARY KEY, status TEXT NOT NULL, seen DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS refused_writes (
    id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, epoch BIGINT NOT NULL, current BIGINT,
    what TEXT NOT NULL, at DOUBLE PRECISION NOT NULL
);
"""


def _pg(sql: str) -> str:
    """SqlStore's SQL for psycopg: `?` placeholders become `%s`, and a literal `%` is doubled (psycopg would
    read it as a placeholder). The shared SQL has no `?` but its placeholders."""
    return sql.replace("%", "%%").replace("?", "%s")


class StaleEpoch(Exception):
    """A write under an epoch the camera no longer has: the camera moved to another shard."""

    def __init__(self, stream_id: str, epoch: int, current: int | None) -> None:
        super().__init__(f"stream {stream_id}: epoch {epoch} is stale (current {current})")
        self.stream_id, self.epoch, self.current = stream_id, epoch, current


@dataclass
class Checkpoint:
    """What a moved camera continues from: the memory items after `frame`, and the open episode (if any)."""

    stream_id: str
    epoch: int
    frame: int
    items: np.ndarray  # (M, C) float32
    episode: dict[str, Any] | None  # Episode.as_dict() plus last_high: [frame, time]
    saved: float

    @staticmethod
    def from_row(row: dict[str, Any]) -> Checkpoint:
        shape = tuple(json.loads(row["shape"]))
        items = np.frombuffer(bytes(row["items"]), np.float32).reshape(shape).copy()
        episode = json.loads(row["episode"]) if row["episode"] else None
        return Checkpoint(row["stream_id"], row["epoch"], row["frame"], items, episode, row["saved"])


class PostgresStore(SqlStore):
    """The SQLite Store's methods on PostgreSQL (SqlStore's SQL), plus assignments, fenced writes and checkpoints.

    One connection per store, serialized by a lock (a shard writes from its engine thread, an API node from
    the event loop's worker threads); every write commits at once, or with its transaction. All SQL here is
    SqlStore's, with `?` placeholders, run by `_exec` and `_all` (a transaction holds the lock, an RLock, and
    runs them too); only `fenced` takes a statement in psycopg's own `%s`, as the shard writes it."""

    NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
    # Shards append outbox events over their own connections, so a higher id can commit before a lower one; a
    # sender that moved its cursor past the higher one would skip the lower for good. Reading only events a few
    # seconds old (on the database's clock) leaves time for the lower one's commit.
    WEBHOOK_SETTLE_S = 2.0

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._db = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("SELECT pg_advisory_lock(15)")  # one schema migration at a time across nodes
            try:
                self._db.execute(SCHEMA)
            finally:
                self._db.execute("SELECT pg_advisory_unlock(15)")

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(_pg(sql), args).rowcount

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._db.execute(_pg(sql), args).fetchall()

    def _delete_where(self, table: str, where: str, args: tuple[Any, ...], columns: str) -> list[dict[str, Any]]:
        return self._all(f"DELETE FROM {table} WHERE {where} RETURNING {columns}", args)

    def reserve_alert_id(self) -> int:
        """The alerts table's sequence: never gives an id twice, across nodes and restarts."""
        return int(self._all("SELECT nextval(pg_get_serial_sequence('alerts', 'id')) AS id")[0]["id"])

    # assignments and epochs (the coordinator) -------------------------------------------------------------
    def assign(self, stream_id: str, shard: str) -> int:
        """Put a camera on a shard under a new epoch (1 the first time, then one more per move); waits for a
        fenced write of the previous owner in flight, so that write is ordered before the move."""
        row = self._all(
            "INSERT INTO assignments VALUES (?, ?, 1, ?) ON CONFLICT (stream_id) DO UPDATE SET"
            " shard = EXCLUDED.shard, epoch = assignments.epoch + 1, assigned = EXCLUDED.assigned RETURNING epoch",
            (stream_id, shard, time.time()),
        )
        return int(row[0]["epoch"])

    def assignments(self) -> dict[str, dict[str, Any]]:
        return {r["stream_id"]: r for r in self._all("SELECT * FROM assignments")}

    def unassign(self, stream_id: str) -> None:
        """A deleted camera: its assignment and checkpoint go (an epoch bump first fences its old shard)."""
        with self._lock, self._db.transaction():
            self._exec("UPDATE assignments SET epoch = epoch + 1 WHERE stream_id = ?", (stream_id,))
            self._exec("DELETE FROM assignments WHERE stream_id = ?", (stream_id,))
            self._exec("DELETE FROM checkpoints WHERE stream_id = ?", (stream_id,))

    # fenced writes (a shard) --------------------------------------------------------------------------------
    def _fence(self, stream_id: str, epoch: int, what: str) -> None:
        """Inside a transaction: hold the assignment row (FOR SHARE) and check the epoch, else StaleEpoch."""
        rows = self._all("SELECT epoch FROM assignments WHERE stream_id = ? FOR SHARE", (stream_id,))
        current = rows[0]["epoch"] if rows else None
        if current != epoch:
            raise StaleEpoch(stream_id, epoch, current)

    @contextmanager
    def fenced_transaction(self, stream_id: str, epoch: int, what: str) -> Iterator[None]:
        """A transaction under the camera's epoch: fenced first; when the camera moved, StaleEpoch, after the
        rollback and a row in refused_writes naming `what`. Fenced writes nest in it (savepoints): a move waits
        until it ends."""
        with self._lock:
            try:
                with self._db.transaction():
                    self._fence(stream_id, epoch, what)
                    yield
            except StaleEpoch as e:
                self._log("refused_writes", stream_id=e.stream_id, epoch=e.epoch, current=e.current, what=what)
                raise

    def fenced(self, stream_id: str, epoch: int, what: str, sql: str, args: tuple) -> list[dict[str, Any]]:
        """One statement (psycopg's `%s` placeholders) under the camera's epoch; StaleEpoch (and a row in
        refused_writes) when it moved."""
        with self.fenced_transaction(stream_id, epoch, what):
            cur = self._db.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def open_alert_fenced(
        self, stream_id: str, epoch: int, id: int, model: str, start_time: float, start_frame: int, peak: float,
        peak_frame: int, checkpoint: Checkpoint,
    ) -> None:  # fmt: skip
        """Insert the alert and the checkpoint that holds its id in one transaction: a camera that moves
        right after either has both or neither, so its next shard never opens the same episode twice."""
        with self.fenced_transaction(stream_id, epoch, "open_alert"):
            self._exec(
                "INSERT INTO alerts (id, stream_id, model, start_time, start_frame, peak_score, peak_frame, epoch)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (id, stream_id, model, start_time, start_frame, peak, peak_frame, epoch),
            )
            if checkpoint.episode is not None:
                checkpoint.episode["id"] = id
            self._write_checkpoint(checkpoint)

    def close_alert_fenced(
        self, stream_id: str, epoch: int, id: int, end_time: float, end_frame: int, peak: float, peak_frame: int,
        checkpoint: Checkpoint, reason: str | None = None,
    ) -> None:  # fmt: skip
        """Close the alert (only if still open: closed once) and checkpoint the camera without it, together."""
        with self.fenced_transaction(stream_id, epoch, "close_alert"):
            self._exec(
                "UPDATE alerts SET end_time = ?, end_frame = ?, peak_score = ?, peak_frame = ?, closed_reason = ?"
                " WHERE id = ? AND end_time IS NULL",
                (end_time, end_frame, peak, peak_frame, reason, id),
            )
            self._write_checkpoint(checkpoint)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.fenced_transaction(checkpoint.stream_id, checkpoint.epoch, "checkpoint"):
            self._write_checkpoint(checkpoint)

    def _write_checkpoint(self, c: Checkpoint) -> None:
        items = np.ascontiguousarray(c.items, np.float32)
        self._exec(
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET"
            " epoch = EXCLUDED.epoch, frame = EXCLUDED.frame, items = EXCLUDED.items, shape = EXCLUDED.shape,"
            " episode = EXCLUDED.episode, saved = EXCLUDED.saved",
            (c.stream_id, c.epoch, c.frame, items.tobytes(), json.dumps(list(items.shape)),
             json.dumps(c.episode) if c.episode is not None else None, c.saved),
        )  # fmt: skip

    def load_checkpoint(self, stream_id: str) -> Checkpoint | None:
        rows = self._all("SELECT * FROM checkpoints WHERE stream_id = ?", (stream_id,))
        return Checkpoint.from_row(rows[0]) if rows else None

    # what an API node asks of a camera's shard, and what the shard says back -----------------------------------
    def request(self, stream_id: str, kind: str, seconds: float | None = None) -> None:
        """Ask the shard running the camera to start a calibration ("calibrate", `seconds`) or reset it
        ("reset"); a newer request replaces one not yet taken."""
        self._exec(
            "INSERT INTO camera_requests VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET"
            " kind = EXCLUDED.kind, seconds = EXCLUDED.seconds, at = EXCLUDED.at",
            (stream_id, kind, seconds, time.time()),
        )

    def take_request(self, stream_id: str, epoch: int) -> dict[str, Any] | None:
        """The shard running the camera under `epoch` takes its pending request (StaleEpoch if it moved)."""
        sql = "DELETE FROM camera_requests WHERE stream_id = %s RETURNING kind, seconds"
        rows = self.fenced(stream_id, epoch, "take_request", sql, (stream_id,))
        return rows[0] if rows else None

    def set_calibration_state(self, stream_id: str, epoch: int, state: dict[str, Any]) -> None:
        """The camera's calibration as its shard sees it (service.pipeline.calibration describe()), for API nodes."""
        sql = ("INSERT INTO calibration_states VALUES (%s, %s, %s) ON CONFLICT (stream_id) DO UPDATE SET"
               " state = EXCLUDED.state, at = EXCLUDED.at")  # fmt: skip
        self.fenced(stream_id, epoch, "calibration_state", sql, (stream_id, json.dumps(state), time.time()))

    def calibration_state(self, stream_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT state FROM calibration_states WHERE stream_id = ?", (stream_id,))
        return json.loads(rows[0]["state"]) if rows else None

    def forget_camera(self, stream_id: str) -> None:
        """A deleted camera's requests and calibration state."""
        self._exec("DELETE FROM camera_requests WHERE stream_id = ?", (stream_id,))
        self._exec("DELETE FROM calibration_states WHERE stream_id = ?", (stream_id,))

    # logs the tests read (restores, moves, refused writes) and the shards' status ----------------------------
    def _log(self, table: str, **row: Any) -> None:
        """Append `row` to a log table, stamped `at` now."""
        row["at"] = time.time()
        self._exec(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def log_restore(
        self, stream_id: str, epoch: int, shard: str, frame: int, items_sha256: str, episode_id: int | None
    ) -> None:
        """A shard resumed a camera from its checkpoint: which one (tests compare it with the checkpoint)."""
        self._log("restores", stream_id=stream_id, epoch=epoch, shard=shard, frame=frame, items_sha256=items_sha256,
                  episode_id=episode_id)  # fmt: skip

    def restores(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM restores ORDER BY id")

    def log_move(
        self, stream_id: str, from_shard: str | None, to_shard: str, epoch: int, reason: str, lost_at: float | None
    ) -> None:
        self._log("moves", stream_id=stream_id, from_shard=from_shard, to_shard=to_shard, epoch=epoch, reason=reason,
                  lost_at=lost_at)  # fmt: skip

    def moves(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM moves ORDER BY id")

    def refused(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM refused_writes ORDER BY id")

    def set_shards(self, status: dict[str, dict[str, Any]]) -> None:
        """The coordinator's view of its shards (API nodes and tests read it here, not from Ray)."""
        now = time.time()
        with self._lock, self._db.transaction():
            self._exec("DELETE FROM shards")
            for name, s in status.items():
                self._exec("INSERT INTO shards VALUES (?, ?, ?)", (name, json.dumps(s), now))

    def shards(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: {**json.loads(r["status"]), "seen": r["seen"]} for r in self._all("SELECT * FROM shards")}
