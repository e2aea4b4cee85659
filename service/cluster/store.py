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
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    fps_cap DOUBLE PRECISION, alerts TEXT NOT NULL, created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS calibrations (
    stream_id TEXT PRIMARY KEY, model TEXT NOT NULL, calibration TEXT NOT NULL, fitted_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, model TEXT NOT NULL,
    start_time DOUBLE PRECISION NOT NULL, end_time DOUBLE PRECISION, start_frame BIGINT NOT NULL,
    end_frame BIGINT, peak_score DOUBLE PRECISION NOT NULL, peak_frame BIGINT NOT NULL,
    thumbnail TEXT, heatmap TEXT, closed_reason TEXT, epoch BIGINT
);
CREATE INDEX IF NOT EXISTS alerts_stream_time ON alerts (stream_id, start_time);
CREATE TABLE IF NOT EXISTS clips (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, original_name TEXT, size BIGINT NOT NULL,
    model TEXT NOT NULL, status TEXT NOT NULL, error TEXT, created DOUBLE PRECISION NOT NULL,
    finished DOUBLE PRECISION
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


class PostgresStore:
    """The SQLite Store's methods on PostgreSQL, plus assignments, fenced writes and checkpoints.

    One connection per store, serialized by a lock (a shard writes from its engine thread, an API node from
    the event loop's worker threads); every write commits at once."""

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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> psycopg.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # streams (the desired state: API nodes add and delete, the coordinator assigns what is here) ---------
    def add_stream(self, id: str, url: str, name: str, model: str, fps_cap: float | None, alerts: dict) -> None:
        self._exec("INSERT INTO streams VALUES (%s, %s, %s, %s, %s, %s, %s)",
                   (id, url, name, model, fps_cap, json.dumps(alerts), time.time()))  # fmt: skip

    def streams(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM streams ORDER BY created")
        for r in rows:
            r["alerts"] = json.loads(r["alerts"])
        return rows

    def stream(self, id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM streams WHERE id = %s", (id,))
        for r in rows:
            r["alerts"] = json.loads(r["alerts"])
        return rows[0] if rows else None

    def delete_stream(self, id: str) -> None:
        self._exec("DELETE FROM streams WHERE id = %s", (id,))

    # calibrations
    def set_calibration(self, stream_id: str, model: str, calibration: dict, fitted_at: float) -> None:
        self._exec(
            "INSERT INTO calibrations VALUES (%s, %s, %s, %s) ON CONFLICT (stream_id) DO UPDATE SET"
            " model = EXCLUDED.model, calibration = EXCLUDED.calibration, fitted_at = EXCLUDED.fitted_at",
            (stream_id, model, json.dumps(calibration), fitted_at),
        )

    def calibration(self, stream_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM calibrations WHERE stream_id = %s", (stream_id,))
        if not rows:
            return None
        return {**rows[0], "calibration": json.loads(rows[0]["calibration"])}

    def delete_calibration(self, stream_id: str) -> None:
        self._exec("DELETE FROM calibrations WHERE stream_id = %s", (stream_id,))

    # alerts (unfenced: the single-process signatures; shards use the fenced ones below)
    def reserve_alert_id(self) -> int:
        """The alerts table's sequence: never gives an id twice, across nodes and restarts."""
        return int(self._all("SELECT nextval(pg_get_serial_sequence('alerts', 'id')) AS id")[0]["id"])

    def open_alert(
        self, id: int, stream_id: str, model: str, start_time: float, start_frame: int, peak: float, peak_frame: int
    ) -> None:
        self._exec(
            "INSERT INTO alerts (id, stream_id, model, start_time, start_frame, peak_score, peak_frame)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (id, stream_id, model, start_time, start_frame, peak, peak_frame),
        )

    def close_alert(
        self, id: int, end_time: float, end_frame: int, peak: float, peak_frame: int, reason: str | None = None
    ) -> None:
        self._exec(
            "UPDATE alerts SET end_time = %s, end_frame = %s, peak_score = %s, peak_frame = %s, closed_reason = %s"
            " WHERE id = %s",
            (end_time, end_frame, peak, peak_frame, reason, id),
        )

    def update_alert_peak(self, id: int, peak: float, peak_frame: int) -> None:
        self._exec("UPDATE alerts SET peak_score = %s, peak_frame = %s WHERE id = %s", (peak, peak_frame, id))

    def set_alert_snapshot(self, id: int, thumbnail: str, heatmap: str | None) -> bool:
        cur = self._exec("UPDATE alerts SET thumbnail = %s, heatmap = %s WHERE id = %s", (thumbnail, heatmap, id))
        return cur.rowcount > 0

    def close_open_alerts(self, end_time: float, reason: str) -> int:
        """Only for a single process: in a cluster an open alert belongs to a camera that another shard
        continues, so API nodes never call this."""
        cur = self._exec(
            "UPDATE alerts SET end_time = GREATEST(start_time, %s), end_frame = peak_frame, closed_reason = %s"
            " WHERE end_time IS NULL",
            (end_time, reason),
        )
        return cur.rowcount

    def open_alert_count(self) -> int:
        return self._all("SELECT COUNT(*) AS n FROM alerts WHERE end_time IS NULL")[0]["n"]

    def delete_alerts(
        self, stream_id: str | None = None, ended_before: float | None = None, keep: int | None = None
    ) -> list[dict[str, Any]]:
        if stream_id is not None:
            where, args = "stream_id = %s", (stream_id,)
        elif ended_before is not None:
            where, args = "end_time IS NOT NULL AND end_time < %s", (ended_before,)
        elif keep is not None:
            where = ("end_time IS NOT NULL AND id NOT IN (SELECT id FROM alerts WHERE end_time IS NOT NULL"
                     " ORDER BY end_time DESC, id DESC LIMIT %s)")  # fmt: skip
            args = (keep,)
        else:
            raise ValueError("delete_alerts needs a stream, a time or a count")
        return self._all(f"DELETE FROM alerts WHERE {where} RETURNING id, thumbnail, heatmap", args)

    def alert_ids(self) -> set[int]:
        return {r["id"] for r in self._all("SELECT id FROM alerts")}

    def alert(self, id: int) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM alerts WHERE id = %s", (id,))
        return rows[0] if rows else None

    def alerts(
        self, stream_id: str | None, since: float | None, until: float | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        where, args = [], []
        if stream_id is not None:
            where.append("stream_id = %s")
            args.append(stream_id)
        if since is not None:
            where.append("COALESCE(end_time, start_time) >= %s")
            args.append(since)
        if until is not None:
            where.append("start_time <= %s")
            args.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = self._all(f"SELECT COUNT(*) AS n FROM alerts {clause}", tuple(args))[0]["n"]
        rows = self._all(f"SELECT * FROM alerts {clause} ORDER BY start_time DESC, id DESC LIMIT %s OFFSET %s",
                         (*args, limit, offset))  # fmt: skip
        return rows, total

    # clips
    def add_clip(self, id: str, filename: str, original_name: str | None, size: int, model: str) -> None:
        self._exec("INSERT INTO clips VALUES (%s, %s, %s, %s, %s, 'queued', NULL, %s, NULL)",
                   (id, filename, original_name, size, model, time.time()))  # fmt: skip

    def set_clip_status(self, id: str, status: str, error: str | None = None) -> None:
        finished = time.time() if status in ("done", "failed") else None
        self._exec("UPDATE clips SET status = %s, error = %s, finished = %s WHERE id = %s",
                   (status, error, finished, id))  # fmt: skip

    def clip(self, id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM clips WHERE id = %s", (id,))
        return rows[0] if rows else None

    def clips(self, limit: int) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM clips ORDER BY created DESC LIMIT %s", (limit,))

    def clips_in(self, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM clips WHERE status = ANY(%s)", (list(statuses),))

    def clip_counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._all("SELECT status, COUNT(*) AS n FROM clips GROUP BY status")}

    def clip_ids(self) -> set[str]:
        return {r["id"] for r in self._all("SELECT id FROM clips")}

    def clips_older_than(self, t: float) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM clips WHERE created < %s", (t,))

    def delete_clip(self, id: str) -> None:
        self._exec("DELETE FROM clips WHERE id = %s", (id,))

    # assignments and epochs (the coordinator) -------------------------------------------------------------
    def assign(self, stream_id: str, shard: str) -> int:
        """Put a camera on a shard under a new epoch (1 the first time, then one more per move); waits for a
        fenced write of the previous owner in flight, so that write is ordered before the move."""
        row = self._all(
            "INSERT INTO assignments VALUES (%s, %s, 1, %s) ON CONFLICT (stream_id) DO UPDATE SET"
            " shard = EXCLUDED.shard, epoch = assignments.epoch + 1, assigned = EXCLUDED.assigned RETURNING epoch",
            (stream_id, shard, time.time()),
        )
        return int(row[0]["epoch"])

    def assignments(self) -> dict[str, dict[str, Any]]:
        return {r["stream_id"]: r for r in self._all("SELECT * FROM assignments")}

    def unassign(self, stream_id: str) -> None:
        """A deleted camera: its assignment and checkpoint go (an epoch bump first fences its old shard)."""
        with self._lock, self._db.transaction():
            self._db.execute("UPDATE assignments SET epoch = epoch + 1 WHERE stream_id = %s", (stream_id,))
            self._db.execute("DELETE FROM assignments WHERE stream_id = %s", (stream_id,))
            self._db.execute("DELETE FROM checkpoints WHERE stream_id = %s", (stream_id,))

    # fenced writes (a shard) --------------------------------------------------------------------------------
    def _fence(self, stream_id: str, epoch: int, what: str) -> None:
        """Inside a transaction: hold the assignment row (FOR SHARE) and check the epoch, else StaleEpoch."""
        row = self._db.execute("SELECT epoch FROM assignments WHERE stream_id = %s FOR SHARE", (stream_id,)).fetchone()
        current = row["epoch"] if row else None
        if current != epoch:
            raise StaleEpoch(stream_id, epoch, current)

    def _refused(self, e: StaleEpoch, what: str) -> None:
        self._db.execute("INSERT INTO refused_writes (stream_id, epoch, current, what, at) VALUES (%s, %s, %s, %s, %s)",
                         (e.stream_id, e.epoch, e.current, what, time.time()))  # fmt: skip

    def fenced(self, stream_id: str, epoch: int, what: str, sql: str, args: tuple) -> list[dict[str, Any]]:
        """One statement under the camera's epoch; StaleEpoch (and a row in refused_writes) when it moved."""
        with self._lock:
            try:
                with self._db.transaction():
                    self._fence(stream_id, epoch, what)
                    cur = self._db.execute(sql, args)
                    return cur.fetchall() if cur.description else []
            except StaleEpoch as e:
                self._refused(e, what)
                raise

    def open_alert_fenced(
        self, stream_id: str, epoch: int, id: int, model: str, start_time: float, start_frame: int, peak: float,
        peak_frame: int, checkpoint: Checkpoint,
    ) -> None:  # fmt: skip
        """Insert the alert and the checkpoint that holds its id in one transaction: a camera that moves
        right after either has both or neither, so its next shard never opens the same episode twice."""
        with self._lock:
            try:
                with self._db.transaction():
                    self._fence(stream_id, epoch, "open_alert")
                    self._db.execute(
                        "INSERT INTO alerts (id, stream_id, model, start_time, start_frame, peak_score, peak_frame,"
                        " epoch) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (id, stream_id, model, start_time, start_frame, peak, peak_frame, epoch),
                    )
                    if checkpoint.episode is not None:
                        checkpoint.episode["id"] = id
                    self._write_checkpoint(checkpoint)
            except StaleEpoch as e:
                self._refused(e, "open_alert")
                raise

    def close_alert_fenced(
        self, stream_id: str, epoch: int, id: int, end_time: float, end_frame: int, peak: float, peak_frame: int,
        checkpoint: Checkpoint, reason: str | None = None,
    ) -> None:  # fmt: skip
        """Close the alert (only if still open: closed once) and checkpoint the camera without it, together."""
        with self._lock:
            try:
                with self._db.transaction():
                    self._fence(stream_id, epoch, "close_alert")
                    self._db.execute(
                        "UPDATE alerts SET end_time = %s, end_frame = %s, peak_score = %s, peak_frame = %s,"
                        " closed_reason = %s WHERE id = %s AND end_time IS NULL",
                        (end_time, end_frame, peak, peak_frame, reason, id),
                    )
                    self._write_checkpoint(checkpoint)
            except StaleEpoch as e:
                self._refused(e, "close_alert")
                raise

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._lock:
            try:
                with self._db.transaction():
                    self._fence(checkpoint.stream_id, checkpoint.epoch, "checkpoint")
                    self._write_checkpoint(checkpoint)
            except StaleEpoch as e:
                self._refused(e, "checkpoint")
                raise

    def _write_checkpoint(self, c: Checkpoint) -> None:
        items = np.ascontiguousarray(c.items, np.float32)
        self._db.execute(
            "INSERT INTO checkpoints VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stream_id) DO UPDATE SET"
            " epoch = EXCLUDED.epoch, frame = EXCLUDED.frame, items = EXCLUDED.items, shape = EXCLUDED.shape,"
            " episode = EXCLUDED.episode, saved = EXCLUDED.saved",
            (c.stream_id, c.epoch, c.frame, items.tobytes(), json.dumps(list(items.shape)),
             json.dumps(c.episode) if c.episode is not None else None, c.saved),
        )  # fmt: skip

    def load_checkpoint(self, stream_id: str) -> Checkpoint | None:
        rows = self._all("SELECT * FROM checkpoints WHERE stream_id = %s", (stream_id,))
        return Checkpoint.from_row(rows[0]) if rows else None

    def log_restore(
        self, stream_id: str, epoch: int, shard: str, frame: int, items_sha256: str, episode_id: int | None
    ) -> None:
        """A shard resumed a camera from its checkpoint: which one (tests compare it with the checkpoint)."""
        self._exec("INSERT INTO restores (stream_id, epoch, shard, frame, items_sha256, episode_id, at)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                   (stream_id, epoch, shard, frame, items_sha256, episode_id, time.time()))  # fmt: skip

    def restores(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM restores ORDER BY id")

    def set_shards(self, status: dict[str, dict[str, Any]]) -> None:
        """The coordinator's view of its shards (API nodes and tests read it here, not from Ray)."""
        now = time.time()
        with self._lock, self._db.transaction():
            self._db.execute("DELETE FROM shards")
            for name, s in status.items():
                self._db.execute("INSERT INTO shards VALUES (%s, %s, %s)", (name, json.dumps(s), now))

    def shards(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: {**json.loads(r["status"]), "seen": r["seen"]} for r in self._all("SELECT * FROM shards")}

    def log_move(
        self, stream_id: str, from_shard: str | None, to_shard: str, epoch: int, reason: str, lost_at: float | None
    ) -> None:
        self._exec("INSERT INTO moves (stream_id, from_shard, to_shard, epoch, reason, lost_at, at)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                   (stream_id, from_shard, to_shard, epoch, reason, lost_at, time.time()))  # fmt: skip

    def moves(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM moves ORDER BY id")

    def refused(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM refused_writes ORDER BY id")
