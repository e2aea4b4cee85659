"""End to end against a real `serve` (uvicorn on loopback) and a real GStreamer RTSP server."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from support import reference_scores, typed_message, wait_for, ws_messages
from websockets.sync.client import connect

from service.core.policy import SOURCE_UNAVAILABLE

pytestmark = pytest.mark.ped2


def collect_ws(url: str, headers: dict, stop, timeout: float) -> list[dict]:
    """Messages until stop(messages) or the timeout, each validated against its model (service.core.messages)."""
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        return ws_messages(ws, stop, timeout, require=False)


def assert_parity(messages: list[dict], ref: dict, key: str = "frame") -> None:
    scores = [m for m in messages if m.get("type", "score") == "score"]
    assert scores, "no scores delivered"
    for m in scores:
        assert m[key] in ref, f"frame {m[key]} was scored but has no reference"
        score, psnr, distance = ref[m[key]]
        assert abs(m["score"] - score) < 1e-3 and abs(m["psnr"] - psnr) < 1e-3 and abs(m["distance"] - distance) < 1e-3


def test_rtsp_stream_scores_equal_evaluate(serve_factory, rtsp_factory, h264_clip, clip_frames, models_dir) -> None:
    """Parity over RTSP: reference = score_clips + calibration on the clip's decoded frames, which equal the
    source frames bit for bit (lossless H.264, checked by the fixture)."""
    rtsp = rtsp_factory(h264_clip)
    server = serve_factory("--frame-buffer", "256")  # parity is about the numbers: no frame may be dropped
    ref = reference_scores(models_dir, clip_frames)
    with server.client() as c:
        stream_id = c.post("/api/streams", json={"url": rtsp.url, "name": "ped2-01"}).json()["id"]
        messages = collect_ws(f"{server.ws_base}/ws/streams/{stream_id}", server.headers(),
                              lambda out: any(m.get("frame") == len(clip_frames) - 1 for m in out), 60)  # fmt: skip
        info = c.get(f"/api/streams/{stream_id}").json()
    first = [m for m in messages if m["type"] == "score" and m["frame"] < len(clip_frames)]
    assert [m["frame"] for m in first] == sorted(ref), "every frame of the first pass is delivered, in order"
    assert_parity(first, ref)
    assert info["frames_dropped"] == 0 and info["model"] == "tiny"
    for m in first:
        assert set(m) >= {"stream", "frame", "captured", "score", "psnr", "distance", "anomalous", "seq"}


def test_uploaded_clip_scores_equal_evaluate(serve_factory, ffv1_clip, clip_frames, models_dir) -> None:
    server = serve_factory()
    ref = reference_scores(models_dir, clip_frames)
    with server.client() as c:
        r = c.post("/api/clips", files={"file": ("ped2-01.avi", ffv1_clip.read_bytes(), "video/x-msvideo")})
        assert r.status_code == 202, r.text
        clip_id = r.json()["id"]
        live = collect_ws(f"{server.ws_base}/ws/clips/{clip_id}", server.headers(),
                          lambda out: any(m["type"] == "done" for m in out), 60)  # fmt: skip
        result = wait_for(lambda: (j := c.get(f"/api/clips/{clip_id}").json())["status"] == "done" and j, 60,
                          message="clip job done")  # fmt: skip
        csv_text = c.get(f"/api/clips/{clip_id}", params={"format": "csv"}).text
        replay = collect_ws(f"{server.ws_base}/ws/clips/{clip_id}", server.headers(),
                            lambda out: any(m["type"] == "done" for m in out), 30)  # fmt: skip
        metrics = c.get("/metrics").text
    assert result["progress"] == 1.0 and result["frames_decoded"] == len(clip_frames)
    assert [s["frame"] for s in result["scores"]] == sorted(ref)
    assert_parity(result["scores"], ref)
    assert [m["frame"] for m in live if m["type"] == "score"] == sorted(ref)  # WebSocket: each score once
    assert all("progress" in m for m in live if m["type"] == "score")
    # a finished job's WebSocket: its scores (without progress), then done; each message validated by collect_ws
    assert [m["frame"] for m in replay if m["type"] == "score"] == sorted(ref)
    assert not any("progress" in m for m in replay if m["type"] == "score") and replay[-1]["type"] == "done"
    assert replay[-1]["status"] == "done" and replay[-1]["frames_scored"] == len(ref)
    assert "anomalous_segments" in result["summary"]
    lines = csv_text.strip().splitlines()
    assert lines[0] == "frame,score,psnr,distance,anomalous" and len(lines) == len(ref) + 1
    assert 'mnad_upload_jobs{state="done"} 1.0' in metrics
    stored = list((server.data_dir / "clips").iterdir())
    assert all(p.name.startswith(clip_id) for p in stored) and not any("ped2-01" in p.name for p in stored)


def test_alert_messages_match_their_model(serve_factory, rtsp_factory, h264_clip) -> None:
    """alert_open on the all-streams feed, as a real server sends it, validated against its model."""
    rtsp = rtsp_factory(h264_clip)
    server = serve_factory()
    with server.client() as c, connect(f"{server.ws_base}/ws/alerts", open_timeout=10) as ws:
        body = {"url": rtsp.url, "name": "gate", "alert_on": 0, "alert_off": 0}  # every frame is above: it opens
        sid = c.post("/api/streams", json=body).json()["id"]
        message = typed_message(ws.recv(timeout=30))
    assert message["type"] == "alert_open" and message["stream"] == sid and message["name"] == "gate"
    assert message["end_frame"] is None and message["id"] >= 1 and message["seq"] == 0


def metric(text: str, name: str, stream: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{stream="{stream}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_rtsp_server_killed_and_restarted_stream_recovers(serve_factory, rtsp_factory, ped2, tmp_path) -> None:
    import cv2
    from conftest import encode_h264_lossless

    files = sorted((ped2 / "testing" / "frames" / "02").glob("*.jpg"))
    long_clip = encode_h264_lossless(np.stack([cv2.imread(str(f)) for f in files]), tmp_path / "long.mkv")
    rtsp = rtsp_factory(long_clip)
    server = serve_factory("--reconnect-initial-s", "0.5", "--reconnect-max-s", "2", "--read-timeout-s", "3")
    with server.client() as c:
        sid = c.post("/api/streams", json={"url": rtsp.url, "name": "cam"}).json()["id"]
        wait_for(lambda: c.get(f"/api/streams/{sid}").json()["frames_scored"] >= 10, 30, message="scoring")
        rtsp.kill()
        down = wait_for(lambda: (s := c.get(f"/api/streams/{sid}").json())["state"] == "reconnecting" and s, 30,
                        message="state reconnecting")  # fmt: skip
        assert down["last_error"]
        m = c.get("/metrics").text
        assert metric(m, "mnad_stream_up", sid) == 0.0
        assert c.get("/healthz").status_code == 200  # the server itself is fine
        scored_before = c.get(f"/api/streams/{sid}").json()["frames_scored"]
        rtsp_factory(long_clip, port=rtsp.port)  # same address: the stream must find it by itself
        wait_for(lambda: c.get(f"/api/streams/{sid}").json()["frames_scored"] > scored_before + 10, 60,
                 message="scoring to resume")  # fmt: skip
        state = c.get(f"/api/streams/{sid}").json()
        m = c.get("/metrics").text
    assert state["state"] == "live" and state["reconnects"] >= 1
    assert metric(m, "mnad_reconnects_total", sid) >= 1 and metric(m, "mnad_decode_errors_total", sid) >= 1
    assert metric(m, "mnad_stream_up", sid) == 1.0


def test_fan_out_slow_subscriber_does_not_slow_others(serve_factory, h264_clip) -> None:
    """20 subscribers, one of them deliberately slow (reads a message per 0.5 s); the fast ones get every
    message in order; the slow one's gaps in `seq` are exactly the drops it was told about."""
    server = serve_factory("--stream", str(h264_clip), "--ws-queue", "4")
    with server.client() as c:
        sid = wait_for(lambda: c.get("/api/streams").json(), 10, message="start stream")[0]["id"]
    url = f"{server.ws_base}/ws/streams/{sid}"
    results: dict[str, list] = {}

    def fast(i: int) -> None:
        results[f"fast{i}"] = collect_ws(url, {}, lambda out: len(out) >= 40, 30)

    def slow() -> None:
        out = []
        with connect(url, max_queue=1) as ws:
            for _ in range(16):
                out.append(typed_message(ws.recv(timeout=10)))
                time.sleep(0.5)
        results["slow"] = out

    threads = [threading.Thread(target=fast, args=(i,)) for i in range(19)] + [threading.Thread(target=slow)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(19):
        seqs = [m["seq"] for m in results[f"fast{i}"] if "seq" in m]
        assert len(seqs) >= 40 and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a fast subscriber lost messages"
    slow_msgs = results["slow"]
    seqs = [m["seq"] for m in slow_msgs if "seq" in m]
    told = sum(m["dropped"] for m in slow_msgs if m["type"] == "dropped")
    assert seqs[-1] - seqs[0] + 1 - len(seqs) == told, "gaps seen by the slow subscriber != drops signalled to it"
    with server.client() as c:
        metrics = c.get("/metrics").text
    total = float(
        next(x for x in metrics.splitlines() if x.startswith("mnad_websocket_dropped_messages_total")).split()[-1]
    )
    assert total >= told


def test_auth_on(serve_factory, h264_clip) -> None:
    server = serve_factory("--stream", str(h264_clip), token="s3cret")
    anon = httpx.Client(base_url=server.base, timeout=10)
    assert anon.get("/healthz").status_code == 200 and anon.get("/readyz").status_code == 200
    assert anon.get("/metrics").status_code == 200
    for path in ("/api/models", "/api/streams", "/api/alerts"):
        assert anon.get(path).status_code == 401
        assert anon.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert anon.post("/api/clips", files={"file": ("a.avi", b"x")}).status_code == 401
    with server.client() as c:
        models = c.get("/api/models").json()
        sid = c.get("/api/streams").json()[0]["id"]
    assert models["default"] == "tiny" and models["models"][0]["calibration"]["alert_on"] > 0
    with (  # handshake refused, whatever the client raises for it
        pytest.raises(Exception),  # noqa: B017
        connect(f"{server.ws_base}/ws/streams/{sid}", open_timeout=5) as ws,
    ):
        ws.recv(timeout=5)
    msgs = collect_ws(f"{server.ws_base}/ws/streams/{sid}", server.headers(), lambda out: len(out) >= 1, 20)
    assert msgs and msgs[0]["stream"] == sid


def test_auth_off_and_bad_input(serve_factory, tmp_path) -> None:
    server = serve_factory("--max-upload-bytes", "100000")
    c = httpx.Client(base_url=server.base, timeout=30)
    assert c.get("/api/models").status_code == 200  # no token configured: open
    info = [x for x in c.get("/metrics").text.splitlines() if x.startswith("mnad_model_info{")]
    assert len(info) == 1 and 'model="tiny"' in info[0] and 'device="cpu"' in info[0]
    for url in ("file:///etc/passwd", "/tmp/video.mp4", "ftp://host/x", "rtsp://"):
        r = c.post("/api/streams", json={"url": url, "name": "x"})
        assert r.status_code == 422, (url, r.text)
    assert c.post("/api/streams", json={"url": "rtsp://127.0.0.1:1/x", "name": "x", "model": "nope"}).status_code == 422
    for path in ("/api/streams/nope", "/api/clips/nope"):
        assert c.get(path).status_code == 404
    assert c.delete("/api/streams/nope").status_code == 404
    # not a video
    r = c.post("/api/clips", files={"file": ("notes.mp4", b"hello, this is text" * 100, "video/mp4")})
    assert r.status_code == 415 and "not a video" in r.json()["detail"]
    # a real video container, truncated: corrupt
    import cv2

    frames = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), np.uint8)
    w = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for f in frames:
        w.write(f)
    w.release()
    data = (tmp_path / "v.avi").read_bytes()
    r = c.post("/api/clips", files={"file": ("cut.avi", data[:600], "video/x-msvideo")})
    assert r.status_code in (415, 422) and r.json()["detail"]

    # too large: refused while receiving (no Content-Length to trust)
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.avi"\r\n\r\n'
        for _ in range(50):
            yield b"\0" * 10_000
        yield b"\r\n--b--\r\n"

    r = c.post("/api/clips", content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    r = c.post("/api/clips", content=b"x" * 10, headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = c.post("/api/clips", files={"other": (None, "text")})
    assert r.status_code == 422
    assert not list((server.data_dir / "clips").iterdir()), "rejected uploads left files behind"
    # unreachable camera: the stream reports it, the server stays healthy
    sid = c.post("/api/streams", json={"url": "rtsp://127.0.0.1:1/none", "name": "down"}).json()["id"]
    s = wait_for(lambda: (x := c.get(f"/api/streams/{sid}").json())["last_error"] and x, 30, message="error state")
    assert s["state"] in ("error", "reconnecting") and s["last_error"] == SOURCE_UNAVAILABLE
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
    m = c.get("/metrics").text
    assert 'mnad_upload_rejected_total{reason="too_large"} 1.0' in m and "not_video" in m
    assert c.delete(f"/api/streams/{sid}").status_code == 204
    assert c.get(f"/api/streams/{sid}").status_code == 404


def test_streams_persist_across_restart_and_alerts_api(serve_factory, tmp_path) -> None:
    data = tmp_path / "persist"
    first = serve_factory(data_dir=data)
    with first.client() as c:
        sid = c.post("/api/streams", json={"url": "rtsp://127.0.0.1:1/a", "name": "door", "alert_on": 0.9,
                                           "alert_off": 0.8}).json()["id"]  # fmt: skip
    first.stop()
    second = serve_factory(data_dir=data)
    with second.client() as c:
        s = c.get(f"/api/streams/{sid}").json()
        page = c.get("/api/alerts", params={"stream": sid, "limit": 5}).json()
        assert c.get("/api/alerts", params={"limit": 0}).status_code == 422
    assert s["name"] == "door" and s["alert"]["on"] == 0.9 and s["origin"] == "api"
    assert page == {"total": 0, "limit": 5, "offset": 0, "items": []}
