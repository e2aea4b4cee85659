"""Issue #14's probes, each turned into a test against a real `serve` (uvicorn on loopback), real video
files and the real SQLite database: internal destinations, a `kill -9` mid-work, the disk bounds,
cross-origin pages, and the smaller ones."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SERVE, encode_ffv1, quiet_env
from support import wait_for
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from service.core.policy import SOURCE_REFUSED
from service.pipeline.clips import INTERRUPTED
from service.runtime import RESTARTED, STOPPED

pytestmark = pytest.mark.ped2

DEFAULT_NETWORKS = '["private", "public"]'  # the shipped default: loopback not listed


def metric(text: str, name: str, labels: str = "") -> float | None:
    prefix = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    return None


def slow_body(boundary: str, name: str, release: threading.Event, started: threading.Event):
    """A multipart upload that sends its head, then waits (the server is left receiving it)."""
    yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    yield b"\0" * 65536
    started.set()
    release.wait(60)
    yield f"\r\n--{boundary}--\r\n".encode()


# 1. SSRF ------------------------------------------------------------------------------------------------


INTERNAL = [
    "rtsp://127.0.0.1:8554/secret", "rtsp://localhost/x", "rtsp://[::1]/x", "rtsp://[::ffff:127.0.0.1]/x",
    "rtsp://2130706433/x", "rtsp://0x7f.1/x", "rtsp://169.254.169.254/latest/meta-data", "rtsp://0.0.0.0:554/x",
    "rtsp://224.0.0.1/x", "rtsp://[fe80::1]/x", "rtsps://127.1:322/x", "http://127.0.0.1:9/secret",
]  # fmt: skip


def test_internal_destinations_refused_with_one_text(serve_factory, tmp_path: Path) -> None:
    """Every form of a loopback, link-local (cloud metadata), unspecified or multicast address, literal or by
    name, is refused before anything connects, all with the same text; a private-LAN camera is accepted."""
    server = serve_factory("--source-networks", DEFAULT_NETWORKS, "--source-schemes", '["rtsp", "rtsps", "http"]')
    with server.client() as c:
        answers = {url: c.post("/api/streams", json={"url": url, "name": "x"}) for url in INTERNAL}
        lan = c.post("/api/streams", json={"url": "rtsp://192.168.255.254:554/cam", "name": "lan"})
        https = c.post("/api/streams", json={"url": "https://8.8.8.8/x", "name": "x"})
        m = c.get("/metrics").text
        assert [s["name"] for s in c.get("/api/streams").json()] == ["lan"]
    assert {u: (r.status_code, r.json()["detail"]) for u, r in answers.items()} == {
        u: (422, SOURCE_REFUSED) for u in INTERNAL
    }
    assert lan.status_code == 201, lan.text
    assert https.status_code == 422 and "source_schemes" in https.json()["detail"]
    assert metric(m, "mnad_sources_refused_total", 'stage="api"') == len(INTERNAL) + 1


def test_streams_are_checked_again_at_every_connect(serve_factory, rtsp_factory, h264_clip, tmp_path: Path) -> None:
    """A stream added while loopback was allowed, and kept in the database, is refused at its next connect once
    the policy no longer lists loopback (as after a DNS answer changed): the camera sees no new session."""
    rtsp = rtsp_factory(h264_clip)
    data = tmp_path / "data"
    first = serve_factory(data_dir=data)
    with first.client() as c:
        sid = c.post("/api/streams", json={"url": rtsp.url, "name": "cam"}).json()["id"]
        wait_for(lambda: c.get(f"/api/streams/{sid}").json()["frames_scored"] > 0, 30, message="scoring")
    first.stop()
    second = serve_factory("--source-networks", DEFAULT_NETWORKS, data_dir=data)
    with second.client() as c:
        s = wait_for(lambda: (x := c.get(f"/api/streams/{sid}").json())["last_error"] and x, 30, message="refusal")
        time.sleep(2)  # refused at once each time: the delay grows 0.5, 1, 2 s, shown in the API and metrics
        s = wait_for(lambda: (x := c.get(f"/api/streams/{sid}").json())["reconnect_delay_s"] >= 1 and x, 10,
                     message="the delay to grow")  # fmt: skip
        m = c.get("/metrics").text
    assert s["state"] == "error" and s["frames_read"] == 0 and s["last_error"].startswith("source unavailable")
    assert metric(m, "mnad_sources_refused_total", 'stage="connect"') >= 2
    assert metric(m, "mnad_reconnect_delay_seconds", f'stream="{sid}"') >= 1


# 2. crash consistency -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_clip(clip_frames: np.ndarray, tmp_path_factory) -> Path:
    """600 frames (Ped2 clip 01's first 60, ten times): scoring it takes long enough to be cut by a kill."""
    return encode_ffv1(np.concatenate([clip_frames] * 10), tmp_path_factory.mktemp("long") / "long.avi")


def test_kill_9_leaves_nothing_stuck(serve_factory, h264_clip, long_clip, tmp_path: Path) -> None:
    """kill -9 while a clip is being scored, an upload is half received and an alert is open. After the
    restart: the clip is failed with a reason on every route and its WebSocket, its files and the partial
    upload are gone, the alert is closed with reason 'service restarted', and the metrics agree with the DB."""
    data = tmp_path / "data"
    flags = ("--stream", str(h264_clip), "--alert-on", "0", "--alert-off", "0", "--max-batch", "1")
    first = serve_factory(*flags, data_dir=data)
    release, started = threading.Event(), threading.Event()
    with first.client() as c:
        wait_for(lambda: c.get("/api/alerts").json()["total"] >= 1, 30, message="an alert to open")
        clip_id = c.post("/api/clips", files={"file": ("long.avi", long_clip.read_bytes())}).json()["id"]
        wait_for(lambda: c.get(f"/api/clips/{clip_id}?scores=false").json()["frames_scored"] > 0, 30, message="scoring")
        upload = threading.Thread(target=lambda: _quietly(lambda: httpx.post(
            f"{first.base}/api/clips", content=slow_body("b", "cut.avi", release, started), timeout=60,
            headers={"Content-Type": "multipart/form-data; boundary=b"})), daemon=True)  # fmt: skip
        upload.start()
        assert started.wait(10)
        wait_for(lambda: list((data / "clips").glob("*.upload")), 10, message="the partial upload on disk")
        progress = c.get(f"/api/clips/{clip_id}?scores=false").json()
    first.proc.kill()  # SIGKILL: nothing runs on the way out
    first.proc.wait(10)
    release.set()
    assert progress["status"] == "running" and 0 < progress["progress"] < 1, progress
    db = sqlite3.connect(data / "service.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM alerts WHERE end_time IS NULL").fetchone()[0] == 1
    db.close()

    second = serve_factory(*flags, data_dir=data)
    with second.client() as c:
        clip = c.get(f"/api/clips/{clip_id}").json()
        csv_text = c.get(f"/api/clips/{clip_id}", params={"format": "csv"}).text
        listed = {x["id"]: x["status"] for x in c.get("/api/clips").json()}
        frame = c.get(f"/api/clips/{clip_id}/frames/10.jpg")
        alerts = c.get("/api/alerts", params={"limit": 10}).json()["items"]
        m = c.get("/metrics").text
        db = sqlite3.connect(data / "service.sqlite3")
        open_in_db = db.execute("SELECT COUNT(*) FROM alerts WHERE end_time IS NULL").fetchone()[0]
        db.close()
    with connect(f"{second.ws_base}/ws/clips/{clip_id}", open_timeout=10) as ws:
        final = json.loads(ws.recv(timeout=10))
    assert clip["status"] == "failed" and clip["error"] == INTERRUPTED and listed == {clip_id: "failed"}
    assert final["type"] == "done" and final["status"] == "failed" and final["error"] == INTERRUPTED
    assert csv_text.strip() == "frame,score,psnr,distance,anomalous" and frame.status_code == 404
    assert sorted(p.name for p in (data / "clips").iterdir()) == [], "files of the interrupted clip left behind"
    restarted = [a for a in alerts if a["closed_reason"] == RESTARTED]
    assert len(restarted) == 1 and restarted[0]["end_time"] >= restarted[0]["start_time"]
    assert metric(m, "mnad_upload_jobs", 'state="failed"') == 1.0
    assert metric(m, "mnad_upload_jobs", 'state="running"') == 0.0
    assert sum(float(x.split()[-1]) for x in m.splitlines() if x.startswith("mnad_alert_open{")) == open_in_db


def test_clean_stop_closes_open_alerts(serve_factory, h264_clip) -> None:
    server = serve_factory("--stream", str(h264_clip), "--alert-on", "0", "--alert-off", "0")
    with server.client() as c:
        wait_for(lambda: c.get("/api/alerts").json()["total"] >= 1, 30, message="an alert to open")
    server.stop()
    db = sqlite3.connect(server.data_dir / "service.sqlite3")
    rows = db.execute("SELECT end_time, end_frame, closed_reason FROM alerts").fetchall()
    db.close()
    assert rows and all(end is not None and frame is not None for end, frame, _ in rows), rows
    assert {reason for _, _, reason in rows} == {STOPPED}


def _quietly(call) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


# 3. bounded storage -------------------------------------------------------------------------------------


def test_upload_quota_concurrency_and_free_space(serve_factory, ffv1_clip: Path) -> None:
    size = ffv1_clip.stat().st_size
    server = serve_factory("--upload-quota-bytes", str(int(size * 1.5)), "--max-concurrent-uploads", "1")
    files = {"file": ("a.avi", ffv1_clip.read_bytes(), "video/x-msvideo")}
    with server.client() as c:
        assert c.post("/api/clips", files=files).status_code == 202
        full = c.post("/api/clips", files=files)
        release, started = threading.Event(), threading.Event()
        result: dict = {}

        def slow() -> None:
            body = slow_body("b", "x.avi", release, started)
            headers = {"Content-Type": "multipart/form-data; boundary=b"}
            result["r"] = httpx.post(f"{server.base}/api/clips", content=body, headers=headers, timeout=60)

        t = threading.Thread(target=slow)
        t.start()
        assert started.wait(10)
        time.sleep(0.3)
        busy = c.post("/api/clips", files={"file": ("b.avi", b"\0" * 10)})
        release.set()
        t.join(30)
        m = c.get("/metrics").text
    assert full.status_code == 507 and "upload_quota_bytes" in full.json()["detail"], full.text
    assert busy.status_code == 429 and "max_concurrent_uploads" in busy.json()["detail"]
    assert busy.headers.get("retry-after")
    assert result["r"].status_code == 415  # the slow one was let through: zeros are not a video
    assert metric(m, "mnad_upload_rejected_total", 'reason="no_room"') == 1.0
    assert metric(m, "mnad_upload_rejected_total", 'reason="busy"') == 1.0
    assert not list((server.data_dir / "clips").glob("*.upload"))
    floor = serve_factory("--min-free-bytes", str(2**50))
    with floor.client() as c:
        r = c.post("/api/clips", files=files)
    assert r.status_code == 507 and "min_free_bytes" in r.json()["detail"]
    assert not list((floor.data_dir / "clips").iterdir())


def test_deleting_a_stream_deletes_its_alerts_pictures_and_metric_series(serve_factory, h264_clip) -> None:
    server = serve_factory("--stream", str(h264_clip), "--alert-on", "0", "--alert-off", "0")
    with server.client() as c:
        sid = wait_for(lambda: c.get("/api/streams").json(), 10, message="the stream")[0]["id"]
        alert = wait_for(lambda: (p := c.get("/api/alerts").json())["total"] and p["items"][0], 30, message="alert")
        wait_for(lambda: c.get(f"/api/alerts/{alert['id']}/thumbnail.jpg").status_code == 200, 10, message="picture")
        assert any(f'stream="{sid}"' in x for x in c.get("/metrics").text.splitlines())
        assert c.delete(f"/api/streams/{sid}").status_code == 204
        page = c.get("/api/alerts").json()
        gone = c.get(f"/api/alerts/{alert['id']}")
        m = c.get("/metrics").text
    assert page["total"] == 0 and gone.status_code == 404
    assert list((server.data_dir / "alerts").iterdir()) == []
    assert [x for x in m.splitlines() if f'stream="{sid}"' in x] == []


def test_alert_retention_by_age_and_count(tmp_path: Path) -> None:
    """The janitor's sweep on a real database and picture folder: closed alerts past alert_retention_s go,
    then all but the max_alerts newest; open ones stay; their pictures go with them."""
    from service.core.settings import Settings
    from service.runtime import Runtime

    rt = Runtime(Settings(data_dir=tmp_path, alert_retention_s=3600, max_alerts=3, _env_file=None))
    now = time.time()
    ids = []
    for i, age in enumerate([7200, 5000, 600, 500, 400, 300, 200]):
        a = rt.store.reserve_alert_id()
        rt.store.open_alert(a, "s", "m", now - age - 10, i, 0.9, i)
        rt.store.close_alert(a, now - age, i + 1, 0.9, i)
        (rt.snapshots.directory / f"{a}.jpg").write_bytes(b"jpg")
        rt.store.set_alert_snapshot(a, f"{a}.jpg", None)
        ids.append(a)
    still_open = rt.store.reserve_alert_id()
    rt.store.open_alert(still_open, "s", "m", now - 9000, 99, 0.9, 99)
    assert rt.expire_alerts() == 4
    kept = sorted(r["id"] for r in rt.store.alerts(None, None, None, 100, 0)[0])
    assert kept == sorted([*ids[-3:], still_open])
    assert sorted(p.name for p in rt.snapshots.directory.iterdir()) == sorted(f"{a}.jpg" for a in ids[-3:])
    rt.store.close()


# 5. origin checks ---------------------------------------------------------------------------------------


def test_cross_origin_pages_cannot_change_state_or_subscribe(serve_factory, h264_clip, ffv1_clip) -> None:
    """A page of another site may POST a multipart form without a preflight, and open any WebSocket; both are
    refused by Origin, with or without a token. Same origin, listed origins and no Origin (curl) pass."""
    server = serve_factory("--stream", str(h264_clip), "--allowed-origins", '["https://ops.example"]', token="tok")
    evil = {"Origin": "http://evil.example", **server.headers()}
    own = {"Origin": server.base, **server.headers()}
    listed = {"Origin": "https://ops.example", **server.headers()}
    files = {"file": ("a.avi", ffv1_clip.read_bytes(), "video/x-msvideo")}
    with httpx.Client(base_url=server.base, timeout=30) as c:
        sid = c.get("/api/streams", headers=server.headers()).json()[0]["id"]
        refused = [c.post("/api/clips", files=files, headers=evil), c.delete(f"/api/streams/{sid}", headers=evil),
                   c.post("/api/streams", json={"url": "rtsp://10.0.0.1/x", "name": "x"},
                          headers={"Origin": "null", **server.headers()})]  # fmt: skip
        assert all(r.status_code == 403 and "Origin" in r.json()["detail"] for r in refused), [r.text for r in refused]
        assert not list((server.data_dir / "clips").iterdir())
        assert c.get("/api/streams", headers=evil).status_code == 200  # reads are not state changes
        assert c.post("/api/clips", files=files, headers=own).status_code == 202
        assert c.post("/api/clips", files=files, headers=listed).status_code == 202
        assert (
            c.post(f"/api/streams/{sid}/calibration", json={"seconds": 2}, headers=server.headers()).status_code == 202
        )
        m = c.get("/metrics").text
    assert metric(m, "mnad_requests_refused_total", 'reason="origin"') == 3.0
    url = f"{server.ws_base}/ws/streams/{sid}"
    with (
        pytest.raises(InvalidStatus) as e,
        connect(url, origin="http://evil.example", additional_headers=server.headers()),
    ):
        pass
    assert e.value.response.status_code == 403
    for origin in (server.base, "https://ops.example"):
        with connect(url, origin=origin, additional_headers=server.headers(), open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["stream"] == sid


# 6. the smaller ones ------------------------------------------------------------------------------------


def test_small_ones(serve_factory, ffv1_clip: Path, clip_frames: np.ndarray, tmp_path: Path) -> None:
    server = serve_factory("--max-upload-name", "100", token="s3cret")
    with httpx.Client(base_url=server.base, timeout=30, headers={"Authorization": "bearer s3cret"}) as c:
        # lowercase scheme: HTTP auth schemes are case-insensitive
        assert c.get("/api/streams").status_code == 200
        assert c.get("/api/streams", headers={"Authorization": "BEARER s3cret"}).status_code == 200
        assert c.get("/api/streams", headers={"Authorization": "Basic s3cret"}).status_code == 401
        # NaN / Infinity in JSON bodies (Python's json accepts them): 422, never 500
        bad = ('{"url": "rtsp://10.0.0.1/x", "name": "x", "fps_cap": NaN}',
               '{"url": "rtsp://10.0.0.1/x", "name": "x", "alert_on": Infinity}', "NaN", "-Infinity")  # fmt: skip
        for body in bad:
            r = c.post("/api/streams", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (body, r.status_code, r.text)
        # ids beyond 64 bits, offsets too
        for path in (f"/api/alerts/{2**64}", f"/api/alerts/{2**63}/thumbnail.jpg", f"/api/alerts?offset={2**70}"):
            assert c.get(path).status_code == 422, path
        assert c.get(f"/api/alerts/{2**63 - 1}").status_code == 404
        # a clip id longer than a file name may be (schemathesis found a 500: the file system refused the name)
        for path in ("/api/clips/{}/frames/1.jpg", "/api/clips/{}/frames/1/heatmap.png", "/api/clips/{}"):
            assert c.get(path.format("\u0301" * 300)).status_code == 404, path
        # upload names have a length limit
        r = c.post("/api/clips", files={"file": ("x" * 101 + ".avi", ffv1_clip.read_bytes())})
        assert r.status_code == 422 and "max_upload_name" in r.json()["detail"]
        assert not list((server.data_dir / "clips").iterdir())
        # a truncated upload and a 2 fps video are scored, with a warning each in the summary
        cut = ffv1_clip.read_bytes()
        low = encode_ffv1(clip_frames[:30], tmp_path / "low.avi", fps=2)
        ids = [c.post("/api/clips", files={"file": (n, d)}).json()["id"]
               for n, d in (("cut.avi", cut[: len(cut) * 6 // 10]), ("low.avi", low.read_bytes()))]  # fmt: skip
        done = [wait_for(lambda i=i: (j := c.get(f"/api/clips/{i}?scores=false").json())["status"] == "done" and j,
                         60, message="clip done") for i in ids]  # fmt: skip
        m = c.get("/metrics").text
    assert [w.split(":")[0] for w in done[0]["summary"]["warnings"]] == ["truncated"], done[0]["summary"]
    assert [w.split(":")[0] for w in done[1]["summary"]["warnings"]] == ["low frame rate"], done[1]["summary"]
    assert metric(m, "mnad_requests_refused_total", 'reason="invalid"') >= 7
    assert metric(m, "mnad_upload_rejected_total", 'reason="name_too_long"') == 1.0
    # a WebSocket to an unknown stream: a not-found close code, not a 403 that reads as an auth failure
    ws = connect(f"{server.ws_base}/ws/streams/nope", additional_headers=server.headers(), open_timeout=10)
    with ws, pytest.raises(ConnectionClosed) as e:
        ws.recv(timeout=10)
    assert e.value.rcvd.code == 4404
    ws = connect(f"{server.ws_base}/ws/clips/nope", additional_headers=server.headers(), open_timeout=10)
    with ws, pytest.raises(ConnectionClosed) as e:
        ws.recv(timeout=10)
    assert e.value.rcvd.code == 4404


def test_empty_token_is_an_error_not_auth_on_nor_off(tmp_path: Path, models_dir: Path) -> None:
    cmd = [SERVE, "--models-dir", str(models_dir), "--data-dir", str(tmp_path / "d"), "--port", "0"]
    r = subprocess.run(cmd, env=quiet_env(MNAD_API_TOKEN=""), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0 and "MNAD_API_TOKEN is set but empty" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "d").exists()


def test_readme_lists_every_open_route() -> None:
    """The open routes (no token) are exactly what README's Settings table says they are."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("| `MNAD_API_TOKEN`"))
    for route in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert route in line, route
