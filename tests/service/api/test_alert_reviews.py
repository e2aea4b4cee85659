"""An operator's verdict on an alert through a real `serve`: given, kept, filtered by, taken back, counted, and
told to every /ws/alerts subscriber."""

from __future__ import annotations

import pytest
from support import wait_for, ws_messages
from websockets.sync.client import connect

pytestmark = pytest.mark.ped2


def test_review_an_alert(serve_factory, h264_clip) -> None:
    server = serve_factory("--stream", str(h264_clip), "--alert-on", "0.05", "--alert-off", "0.04")  # alerts at once
    with server.client() as c:
        first = wait_for(lambda: c.get("/api/alerts").json()["items"], 60, message="an alert")[-1]
        assert first["verdict"] is None and first["reviewed_at"] is None
        id = first["id"]
        with connect(f"{server.ws_base}/ws/alerts", open_timeout=10) as ws:  # another operator's dashboard
            r = c.patch(f"/api/alerts/{id}", json={"verdict": "false_alarm"})
            told = ws_messages(ws, lambda out: any(m["type"] == "alert_review" for m in out), 10)
        assert r.status_code == 200, r.text
        reviewed = r.json()
        review = next(m for m in told if m["type"] == "alert_review")
        expected = {"type": "alert_review", "stream": first["stream_id"], "id": id, "verdict": "false_alarm",
                    "reviewed_at": reviewed["reviewed_at"]}  # fmt: skip
        assert {k: v for k, v in review.items() if k != "seq"} == expected
        assert reviewed["verdict"] == "false_alarm" and reviewed["reviewed_at"] > first["start_time"]
        moving = ("verdict", "reviewed_at", "end_time", "end_frame", "peak_score", "peak_frame", "thumbnail_url",
                  "heatmap_url")  # the review's, and what an episode still open changes meanwhile  # fmt: skip
        assert {k: v for k, v in reviewed.items() if k not in moving} == {
            k: v for k, v in first.items() if k not in moving
        }
        assert c.get(f"/api/alerts/{id}").json()["verdict"] == "false_alarm"

        def ids(query: str) -> set[int]:
            return {a["id"] for a in c.get(f"/api/alerts?limit=1000&{query}").json()["items"]}

        assert ids("verdict=false_alarm") == {id} and ids("verdict=confirmed") == set()
        assert id in ids("") and id not in ids("verdict=unreviewed")
        assert c.patch(f"/api/alerts/{id}", json={"verdict": "confirmed"}).json()["verdict"] == "confirmed"
        assert ids("verdict=confirmed") == {id} and ids("verdict=false_alarm") == set()
        cleared = c.patch(f"/api/alerts/{id}", json={"verdict": None}).json()
        assert cleared["verdict"] is None and cleared["reviewed_at"] is None and id in ids("verdict=unreviewed")
        # refused
        assert c.patch(f"/api/alerts/{2**62}", json={"verdict": "confirmed"}).status_code == 404
        for body in ({"verdict": "maybe"}, {}, {"verdict": "confirmed", "note": "x"}):
            assert c.patch(f"/api/alerts/{id}", json=body).status_code == 422, body
        assert c.get("/api/alerts?verdict=maybe").status_code == 422
        metrics = c.get("/metrics").text
    for verdict, n in (("false_alarm", 1), ("confirmed", 1), ("cleared", 1)):
        assert f'mnad_alert_reviews_total{{stream="{first["stream_id"]}",verdict="{verdict}"}} {n:.1f}' in metrics
    server.stop()
    server = serve_factory("--stream", str(h264_clip), data_dir=server.data_dir)  # kept across a restart
    with server.client() as c:
        assert c.patch(f"/api/alerts/{id}", json={"verdict": "false_alarm"}).status_code == 200
    server.stop()
    server = serve_factory("--stream", str(h264_clip), data_dir=server.data_dir)
    with server.client() as c:
        assert c.get(f"/api/alerts/{id}").json()["verdict"] == "false_alarm"


def test_a_database_from_before_reviews_gains_them(tmp_path) -> None:
    """An alerts table of v0.1 (no pictures, no reviews) is migrated in place: its rows stay, unreviewed."""
    import sqlite3

    from service.core.store import SqliteStore

    path = tmp_path / "service.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, model TEXT NOT NULL,"
            " start_time REAL NOT NULL, end_time REAL, start_frame INTEGER NOT NULL, end_frame INTEGER,"
            " peak_score REAL NOT NULL, peak_frame INTEGER NOT NULL)"
        )
        db.execute("INSERT INTO alerts VALUES (1, 's', 'm', 1.0, 2.0, 0, 10, 0.9, 5)")
    store = SqliteStore(path)
    assert store.alert(1)["verdict"] is None and store.alerts(None, None, None, 10, 0, "unreviewed")[1] == 1
    assert store.review_alert(1, "confirmed", 3.0)["reviewed_at"] == 3.0
    store.close()
    again = SqliteStore(path)  # idempotent
    assert again.alert(1)["verdict"] == "confirmed" and again.alert(1)["peak_frame"] == 5
    again.close()
