"""Persistence: streams (they come back after a restart), their own calibrations, alerts, upload jobs, and the
outbox of alert webhooks (events and each receiver's cursor, so no alert is lost to a restart or an outage).

`Store` is what the service asks of persistence, and all it depends on; `SqliteStore` keeps it in one SQLite
file, and cluster mode's PostgresStore (service/cluster/store.py) on a server database. The SQL the two dialects
share is written once, in `SqlStore`.

SQLite: one connection shared by the event loop, the engine and the alert writer, serialized by a lock; every
write is small and committed at once, so a crash loses at most the write in flight.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

ALERT_ID_BLOCK = 64  # alert ids SqliteStore reserves per write (see reserve_alert_id)

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    fps_cap REAL, alerts TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calibrations (
    stream_id TEXT PRIMARY KEY, model TEXT NOT NULL, calibration TEXT NOT NULL, fitted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS masks (
    stream_id TEXT PRIMARY KEY, polygons TEXT NOT NULL, set_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, model TEXT NOT NULL,
    start_time REAL NOT NULL, end_time REAL, start_frame INTEGER NOT NULL, end_frame INTEGER,
    peak_score REAL NOT NULL, peak_frame INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_stream_time ON alerts (stream_id, start_time);
CREATE TABLE IF NOT EXISTS clips (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, original_name TEXT, size INTEGER NOT NULL,
    model TEXT NOT NULL, status TEXT NOT NULL, error TEXT, created REAL NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, delivery TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_cursors (
    receiver TEXT PRIMARY KEY, last_id INTEGER NOT NULL, holder TEXT, lease_until REAL NOT NULL
);
"""


@runtime_checkable
class Store(Protocol):
    """Every persistence operation the service uses. Rows are plain dicts with the columns of SCHEMA."""

    def close(self) -> None: ...

    # streams added through the API (restarted with the service)
    def add_stream(self, id: str, url: str, name: str, model: str, fps_cap: float | None, alerts: dict) -> None: ...
    def streams(self) -> list[dict[str, Any]]:
        """Oldest first, `alerts` (the stream's alert overrides) decoded."""
        ...

    def delete_stream(self, id: str) -> None: ...

    # a stream's own calibration
    def set_calibration(self, stream_id: str, model: str, calibration: dict, fitted_at: float) -> None: ...
    def calibration(self, stream_id: str) -> dict[str, Any] | None:
        """{stream_id, model, calibration (decoded), fitted_at}, or None."""
        ...

    def delete_calibration(self, stream_id: str) -> None: ...

    # a stream's mask (service.pipeline.masks)
    def set_mask(self, stream_id: str, polygons: list) -> None:
        """Store the stream's polygons; an empty list removes its mask."""

    def mask(self, stream_id: str) -> list[list[list[float]]]:
        """The stream's stored polygons ([] if it has none)."""
        ...

    # alert episodes
    def reserve_alert_id(self) -> int:
        """A new alert id, never given before (not after a restart either), so an episode's messages can carry it
        before its row is written (off the engine thread). Cheap: called on the engine thread."""
        ...

    def open_alert(
        self, id: int, stream_id: str, model: str, start_time: float, start_frame: int, peak: float, peak_frame: int
    ) -> None:
        """Insert the row of alert `id` (from reserve_alert_id), open (no end yet)."""
        ...

    def close_alert(
        self, id: int, end_time: float, end_frame: int, peak: float, peak_frame: int, reason: str | None = None
    ) -> None: ...
    def update_alert_peak(self, id: int, peak: float, peak_frame: int) -> None: ...
    def set_alert_snapshot(self, id: int, thumbnail: str, heatmap: str | None) -> bool:
        """Record the alert's picture file names; False when the alert is gone (deleted meanwhile)."""
        ...

    def close_open_alerts(self, end_time: float, reason: str) -> int:
        """At start-up: alerts a crash left open end now, with the reason; how many."""
        ...

    def open_alert_count(self) -> int: ...
    def delete_alerts(
        self, stream_id: str | None = None, ended_before: float | None = None, keep: int | None = None
    ) -> list[dict[str, Any]]:
        """Delete a stream's alerts, or closed ones that ended before a time, or all closed ones but the `keep`
        newest; the deleted rows' id, thumbnail and heatmap (for their pictures)."""
        ...

    def alert_ids(self) -> set[int]: ...
    def alert(self, id: int) -> dict[str, Any] | None: ...
    def alerts(
        self,
        stream_id: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        offset: int,
        verdict: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of alerts, newest start first, and how many match in all; `verdict`: only those an operator
        judged so ("false_alarm", "confirmed"), or not yet ("unreviewed")."""
        ...

    def review_alert(self, id: int, verdict: str | None, at: float) -> dict[str, Any] | None:
        """An operator's verdict on the alert (None clears it); its row after, or None if there is no such alert."""
        ...

    # the webhook outbox (service.alerts.webhooks)
    WEBHOOK_SETTLE_S: float  # an event is read this long after it was stored (see PostgresStore)

    def add_webhook_event(self, delivery: str, event: str, body: str, keep_s: float) -> None:
        """Append an alert message to the outbox (stamped by the database's clock); now and then, events older
        than `keep_s` go."""
        ...

    def webhook_events_after(self, last_id: int, settle_s: float, limit: int) -> list[dict[str, Any]]:
        """The outbox's events after `last_id`, oldest first, at least `settle_s` old: {id, delivery, event, body,
        age (s)}."""
        ...

    def webhook_backlog(self, last_id: int) -> int: ...
    def claim_webhook(self, receiver: str, holder: str, lease_s: float) -> int | None:
        """Take or renew the lease on a receiver's cursor (made at the newest event if new: no history is
        replayed); its last delivered event id, or None while another holder's lease runs."""
        ...

    def advance_webhook(self, receiver: str, holder: str, last_id: int, lease_s: float) -> bool:
        """Move the cursor to `last_id` and renew the lease; False when `holder` no longer holds it."""
        ...

    def release_webhook(self, receiver: str, holder: str) -> None: ...

    # upload jobs
    def add_clip(self, id: str, filename: str, original_name: str | None, size: int, model: str) -> None: ...
    def set_clip_status(self, id: str, status: str, error: str | None = None) -> None: ...
    def clip(self, id: str) -> dict[str, Any] | None: ...
    def clips(self, limit: int) -> list[dict[str, Any]]: ...
    def clips_in(self, statuses: tuple[str, ...]) -> list[dict[str, Any]]: ...
    def clip_counts(self) -> dict[str, int]: ...
    def clip_ids(self) -> set[str]: ...
    def clips_older_than(self, t: float) -> list[dict[str, Any]]: ...
    def delete_clip(self, id: str) -> None: ...


class SqlStore(ABC):
    """The `Store` operations whose SQL is the same in SQLite and PostgreSQL, written once on two primitives a
    dialect provides: `_exec` (a write; its row count) and `_all` (a query; its rows as fresh dicts). Both take
    `?` placeholders (PostgresStore translates them) and serialize on the store's one connection. A dialect adds
    its schema, `reserve_alert_id` and `_delete_where` (deleting rows and returning them)."""

    _db: Any  # the one connection: sqlite3.Connection or psycopg.Connection
    _lock: Any  # serializes it: threading.Lock or RLock
    NOW: str  # the database's clock as unix seconds, an SQL expression: outbox times never mix two machines' clocks
    PRUNE_EVERY = 128  # outbox events appended between two prunes
    WEBHOOK_SETTLE_S = 0.0  # one connection: events commit in the order of their ids
    _appended = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @abstractmethod
    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one write, committed at once; how many rows it changed."""

    @abstractmethod
    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run one query; its rows as dicts (the caller may change them)."""

    @abstractmethod
    def _delete_where(self, table: str, where: str, args: tuple[Any, ...], columns: str) -> list[dict[str, Any]]:
        """Delete the rows of `table` matching `where`; their `columns`, atomically with the delete."""

    # streams
    def add_stream(self, id: str, url: str, name: str, model: str, fps_cap: float | None, alerts: dict) -> None:
        self._exec(
            "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?, ?)",
            (id, url, name, model, fps_cap, json.dumps(alerts), time.time()),
        )

    def streams(self) -> list[dict[str, Any]]:
        return self._decoded_streams("SELECT * FROM streams ORDER BY created")

    def stream(self, id: str) -> dict[str, Any] | None:
        """One stream (alerts decoded), or None; cluster mode reads its streams one at a time."""
        rows = self._decoded_streams("SELECT * FROM streams WHERE id = ?", (id,))
        return rows[0] if rows else None

    def _decoded_streams(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        rows = self._all(sql, args)
        for r in rows:
            r["alerts"] = json.loads(r["alerts"])
        return rows

    def delete_stream(self, id: str) -> None:
        self._exec("DELETE FROM streams WHERE id = ?", (id,))

    # a stream's own calibration (fitted on its footage; table added after v0.1, CREATE IF NOT EXISTS migrates)
    def set_calibration(self, stream_id: str, model: str, calibration: dict, fitted_at: float) -> None:
        self._exec(
            "INSERT INTO calibrations VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET"
            " model = EXCLUDED.model, calibration = EXCLUDED.calibration, fitted_at = EXCLUDED.fitted_at",
            (stream_id, model, json.dumps(calibration), fitted_at),
        )

    def calibration(self, stream_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM calibrations WHERE stream_id = ?", (stream_id,))
        if not rows:
            return None
        return {**rows[0], "calibration": json.loads(rows[0]["calibration"])}

    def delete_calibration(self, stream_id: str) -> None:
        self._exec("DELETE FROM calibrations WHERE stream_id = ?", (stream_id,))

    # a stream's mask (table added after v0.1, CREATE IF NOT EXISTS migrates)
    def set_mask(self, stream_id: str, polygons: list) -> None:
        if not polygons:
            self._exec("DELETE FROM masks WHERE stream_id = ?", (stream_id,))
            return
        self._exec(
            "INSERT INTO masks VALUES (?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET"
            " polygons = EXCLUDED.polygons, set_at = EXCLUDED.set_at",
            (stream_id, json.dumps(polygons), time.time()),
        )

    def mask(self, stream_id: str) -> list[list[list[float]]]:
        rows = self._all("SELECT polygons FROM masks WHERE stream_id = ?", (stream_id,))
        return json.loads(rows[0]["polygons"]) if rows else []

    # alerts
    def open_alert(
        self, id: int, stream_id: str, model: str, start_time: float, start_frame: int, peak: float, peak_frame: int
    ) -> None:
        self._exec(
            "INSERT INTO alerts (id, stream_id, model, start_time, start_frame, peak_score, peak_frame)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (id, stream_id, model, start_time, start_frame, peak, peak_frame),
        )

    def close_alert(
        self, id: int, end_time: float, end_frame: int, peak: float, peak_frame: int, reason: str | None = None
    ) -> None:
        self._exec(
            "UPDATE alerts SET end_time = ?, end_frame = ?, peak_score = ?, peak_frame = ?, closed_reason = ?"
            " WHERE id = ?",
            (end_time, end_frame, peak, peak_frame, reason, id),
        )

    def update_alert_peak(self, id: int, peak: float, peak_frame: int) -> None:
        self._exec("UPDATE alerts SET peak_score = ?, peak_frame = ? WHERE id = ?", (peak, peak_frame, id))

    def set_alert_snapshot(self, id: int, thumbnail: str, heatmap: str | None) -> bool:
        """False when the alert is gone (deleted with its stream, or by retention, meanwhile)."""
        return self._exec("UPDATE alerts SET thumbnail = ?, heatmap = ? WHERE id = ?", (thumbnail, heatmap, id)) > 0

    def close_open_alerts(self, end_time: float, reason: str) -> int:
        """At start-up: alerts a crash left open end now, with the reason (their last frame is unknown). Only for
        a single process: in a cluster an open alert belongs to a camera another shard continues, so API nodes
        never call this. (CASE: SQLite's two-argument MAX is PostgreSQL's GREATEST.)"""
        return self._exec(
            "UPDATE alerts SET end_time = CASE WHEN start_time > ? THEN start_time ELSE ? END,"
            " end_frame = peak_frame, closed_reason = ? WHERE end_time IS NULL",
            (end_time, end_time, reason),
        )

    def open_alert_count(self) -> int:
        return self._all("SELECT COUNT(*) AS n FROM alerts WHERE end_time IS NULL")[0]["n"]

    def delete_alerts(
        self, stream_id: str | None = None, ended_before: float | None = None, keep: int | None = None
    ) -> list[dict[str, Any]]:
        """Delete a stream's alerts, or closed ones that ended before a time, or all closed ones but the `keep`
        newest; the deleted rows (for their pictures). Open alerts are only deleted with their stream."""
        if stream_id is not None:
            where, args = "stream_id = ?", (stream_id,)
        elif ended_before is not None:
            where, args = "end_time IS NOT NULL AND end_time < ?", (ended_before,)
        elif keep is not None:
            where = ("end_time IS NOT NULL AND id NOT IN (SELECT id FROM alerts WHERE end_time IS NOT NULL"
                     " ORDER BY end_time DESC, id DESC LIMIT ?)")  # fmt: skip
            args = (keep,)
        else:
            raise ValueError("delete_alerts needs a stream, a time or a count")
        return self._delete_where("alerts", where, args, "id, thumbnail, heatmap")

    def alert_ids(self) -> set[int]:
        return {r["id"] for r in self._all("SELECT id FROM alerts")}

    def alert(self, id: int) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM alerts WHERE id = ?", (id,))
        return rows[0] if rows else None

    def alerts(
        self,
        stream_id: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        offset: int,
        verdict: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        where, args = [], []
        if stream_id is not None:
            where.append("stream_id = ?")
            args.append(stream_id)
        if verdict == "unreviewed":
            where.append("verdict IS NULL")
        elif verdict is not None:
            where.append("verdict = ?")
            args.append(verdict)
        if since is not None:  # episodes overlapping [since, until]
            where.append("COALESCE(end_time, start_time) >= ?")
            args.append(since)
        if until is not None:
            where.append("start_time <= ?")
            args.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = self._all(f"SELECT COUNT(*) AS n FROM alerts {clause}", tuple(args))[0]["n"]
        rows = self._all(f"SELECT * FROM alerts {clause} ORDER BY start_time DESC, id DESC LIMIT ? OFFSET ?",
                         (*args, limit, offset))  # fmt: skip
        return rows, total

    def review_alert(self, id: int, verdict: str | None, at: float) -> dict[str, Any] | None:
        reviewed_at = None if verdict is None else at
        self._exec("UPDATE alerts SET verdict = ?, reviewed_at = ? WHERE id = ?", (verdict, reviewed_at, id))
        return self.alert(id)

    # the webhook outbox: events in the order they were stored, a cursor and a lease per receiver
    def add_webhook_event(self, delivery: str, event: str, body: str, keep_s: float) -> None:
        self._exec(f"INSERT INTO webhook_events (delivery, event, body, created) VALUES (?, ?, ?, {self.NOW})",
                   (delivery, event, body))  # fmt: skip
        self._appended += 1
        if self._appended % self.PRUNE_EVERY == 0:
            self._exec(f"DELETE FROM webhook_events WHERE created < {self.NOW} - ?", (keep_s,))

    def webhook_events_after(self, last_id: int, settle_s: float, limit: int) -> list[dict[str, Any]]:
        return self._all(
            f"SELECT id, delivery, event, body, {self.NOW} - created AS age FROM webhook_events"
            f" WHERE id > ? AND created <= {self.NOW} - ? ORDER BY id LIMIT ?",
            (last_id, settle_s, limit),
        )

    def webhook_backlog(self, last_id: int) -> int:
        return self._all("SELECT COUNT(*) AS n FROM webhook_events WHERE id > ?", (last_id,))[0]["n"]

    def claim_webhook(self, receiver: str, holder: str, lease_s: float) -> int | None:
        now = time.time()
        self._exec(
            "INSERT INTO webhook_cursors SELECT ?, COALESCE(MAX(id), 0), NULL, 0 FROM webhook_events"
            " WHERE true ON CONFLICT (receiver) DO NOTHING",  # WHERE: SQLite's parser needs one before ON CONFLICT
            (receiver,),
        )
        rows = self._all(
            "UPDATE webhook_cursors SET holder = ?, lease_until = ? WHERE receiver = ? AND (holder = ? OR"
            " lease_until < ?) RETURNING last_id",
            (holder, now + lease_s, receiver, holder, now),
        )
        return rows[0]["last_id"] if rows else None

    def advance_webhook(self, receiver: str, holder: str, last_id: int, lease_s: float) -> bool:
        return (
            self._exec(
                "UPDATE webhook_cursors SET last_id = ?, lease_until = ? WHERE receiver = ? AND holder = ?",
                (last_id, time.time() + lease_s, receiver, holder),
            )
            > 0
        )

    def release_webhook(self, receiver: str, holder: str) -> None:
        self._exec("UPDATE webhook_cursors SET lease_until = 0 WHERE receiver = ? AND holder = ?", (receiver, holder))

    # clips
    def add_clip(self, id: str, filename: str, original_name: str | None, size: int, model: str) -> None:
        self._exec(
            "INSERT INTO clips VALUES (?, ?, ?, ?, ?, 'queued', NULL, ?, NULL)",
            (id, filename, original_name, size, model, time.time()),
        )

    def set_clip_status(self, id: str, status: str, error: str | None = None) -> None:
        finished = time.time() if status in ("done", "failed") else None
        self._exec("UPDATE clips SET status = ?, error = ?, finished = ? WHERE id = ?", (status, error, finished, id))

    def clip(self, id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM clips WHERE id = ?", (id,))
        return rows[0] if rows else None

    def clips(self, limit: int) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM clips ORDER BY created DESC LIMIT ?", (limit,))

    def clips_in(self, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        if not statuses:  # PostgreSQL has no empty IN ()
            return []
        marks = ", ".join("?" * len(statuses))
        return self._all(f"SELECT * FROM clips WHERE status IN ({marks})", statuses)

    def clip_counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._all("SELECT status, COUNT(*) AS n FROM clips GROUP BY status")}

    def clip_ids(self) -> set[str]:
        return {r["id"] for r in self._all("SELECT id FROM clips")}

    def clips_older_than(self, t: float) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM clips WHERE created < ?", (t,))

    def delete_clip(self, id: str) -> None:
        self._exec("DELETE FROM clips WHERE id = ?", (id,))


class SqliteStore(SqlStore):
    """`Store` in one SQLite file (WAL)."""

    NOW = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(alerts)")}
            # peak-frame pictures (file names), why an alert was closed other than by its scores, an operator's
            # verdict on it and when it was given
            added = {"thumbnail": "TEXT", "heatmap": "TEXT", "closed_reason": "TEXT", "verdict": "TEXT",
                     "reviewed_at": "REAL"}  # after v0.1  # fmt: skip
            for column, kind in added.items():
                if column not in columns:
                    self._db.execute(f"ALTER TABLE alerts ADD COLUMN {column} {kind}")
            self._next_alert_id = self._alert_sequence() + 1
        self._reserved_alert_ids = self._next_alert_id  # ids up to here (exclusive) are reserved in the database

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _delete_where(self, table: str, where: str, args: tuple[Any, ...], columns: str) -> list[dict[str, Any]]:
        """A SELECT then the DELETE under the lock (the one connection: nothing comes between); no RETURNING,
        which SQLite only has since 3.35."""
        with self._lock:
            rows = [dict(r) for r in self._db.execute(f"SELECT {columns} FROM {table} WHERE {where}", args)]
            self._db.execute(f"DELETE FROM {table} WHERE {where}", args)
        return rows

    def reserve_alert_id(self) -> int:
        """Ids come from a counter in memory; the database's AUTOINCREMENT sequence is moved ahead of it a block
        at a time (one small write per ALERT_ID_BLOCK alerts), so an id published but never stored (a crash in
        between) is not given again after a restart."""
        with self._lock:
            if self._next_alert_id >= self._reserved_alert_ids:
                self._reserved_alert_ids = self._next_alert_id + ALERT_ID_BLOCK
                self._set_alert_sequence(self._reserved_alert_ids - 1)
            id = self._next_alert_id
            self._next_alert_id += 1
            return id

    def _alert_sequence(self) -> int:
        """The highest alert id ever given (caller holds the lock)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'alerts'").fetchone()
        top = self._db.execute("SELECT MAX(id) AS m FROM alerts").fetchone()
        return max(row["seq"] if row else 0, top["m"] or 0)

    def _set_alert_sequence(self, seq: int) -> None:
        if self._db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'alerts'", (seq,)).rowcount:
            return
        self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('alerts', ?)", (seq,))
