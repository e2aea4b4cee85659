"""Calibrating a stream on its own footage: the collection and fit (unit), a stream switching its scores and
thresholds, and end to end against a real `serve` playing a Ped2 clip in a loop, across a restart."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support import scored_with, wait_for, ws_messages
from websockets.sync.client import connect

from model.calibration import MIN_FRAMES, Calibration
from service.alerts.writer import AlertWriter
from service.capture.buffer import Frame
from service.core.messages import Published
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.core.store import SqliteStore
from service.pipeline.calibration import CalibrationBusy, StreamCalibration
from service.pipeline.engine import Scored
from service.pipeline.streams import Stream, StreamManager

MODEL = Calibration(44.1, 0.6, 0.01, 0.002, 0.6, 0.9, 0.8, 400)  # a checkpoint's, fitted on another camera


def normal_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """This camera's normal frames: 3 dB below the checkpoint's calibration footage."""
    rng = np.random.default_rng(seed)
    return rng.normal(41.0, 1.0, n).astype(np.float32), rng.normal(0.012, 0.002, n).astype(np.float32)


def test_collection_needs_enough_frames_then_fits_once() -> None:
    own = StreamCalibration(MODEL)
    assert own.state == "model" and own.current is MODEL and own.add(0, 40.0, 0.01) is None
    assert own.start(5) == MIN_FRAMES  # 0.5 s at 10 fps: too few for a mean, a spread and a 99th percentile
    with pytest.raises(CalibrationBusy):
        own.start(100)
    psnr, distance = normal_frames(MIN_FRAMES)
    for i in range(MIN_FRAMES - 1):  # e.g. the camera died: no fit on what came in, it keeps collecting
        assert own.add(100 + i, float(psnr[i]), float(distance[i])) is None
    state = own.describe()
    assert state["state"] == "collecting" and state["progress"] == pytest.approx(0.95) and state["frames"] == 19
    assert state["calibration"] == MODEL.to_dict() and state["first_frame"] == 100  # the model's scores meanwhile
    fitted = own.add(200, float(psnr[-1]), float(distance[-1]))
    assert fitted == Calibration.fit(psnr.astype(np.float64), distance.astype(np.float64), MODEL.weight)
    state = own.describe()
    assert state["state"] == "fitted" and state["progress"] == 1.0 and state["target_frames"] == MIN_FRAMES
    assert state["last_frame"] == 200 and state["fitted_at"] > 0 and own.current is fitted
    assert own.add(201, 30.0, 0.1) is None  # done collecting
    own.start(30)
    assert own.current is fitted  # a new collection scores with the last fit until it fits
    own.reset()
    assert own.state == "model" and own.current is MODEL and own.describe()["fitted_at"] is None


def manager(
    tmp_path: Path, published: Published | None = None, **settings
) -> tuple[StreamManager, SqliteStore, Metrics]:
    """A manager without engine; its writer stores calibrations in order, then publishes into `published`."""
    store, metrics = SqliteStore(tmp_path / "db.sqlite3"), Metrics()
    writer = AlertWriter(published.extend if published is not None else lambda messages: None)
    writer.start()
    return StreamManager(Settings(_env_file=None, **settings), store, None, metrics, writer), store, metrics


def stream(m: StreamManager, model: SimpleNamespace, alerts: dict | None = None) -> Stream:
    own = StreamCalibration(model.calibration)
    policy = m.policy(model, alerts, own.current)
    return Stream("s", "rtsp://x/y", "cam", model, None, policy, "api", m.store, m.metrics, m.writer,
                  calibration=own, policy_for=lambda c: m.policy(model, alerts, c))  # fmt: skip


def feed(s: Stream, psnr: np.ndarray, distance: np.ndarray, start: int = 0) -> Published:
    messages = []
    for i, (p, d) in enumerate(zip(psnr, distance), start):
        frame = Frame(i, 0, float(i), np.zeros((4, 4, 1), np.uint8))
        # the calibration fits the region measures, which the whole-frame ones equal for a checkpoint without windows
        messages += s.on_scored(
            Scored(frame, float(p), float(d), 0.99, None, region_psnr=float(p), region_distance=float(d))
        )
    return messages


def test_stream_switches_to_its_fit_stores_it_and_reverts(tmp_path: Path) -> None:
    published: Published = []
    m, store, metrics = manager(tmp_path, published)
    model = SimpleNamespace(name="ped2", calibration=MODEL, fps=10.0)
    s = stream(m, model)
    assert s.policy.on == MODEL.alert_on and s.describe()["calibration"] == "model"
    assert s.start_calibration(2.5)["target_frames"] == 25
    psnr, distance = normal_frames(25)
    scores = feed(s, psnr, distance)
    assert {msg.type for _, msg in scores} == {"score"}
    m.writer.flush()  # the fit is stored off the engine thread, then announced
    calibrated = [msg for topic, msg in published if msg.type == "calibrated"]
    assert len(calibrated) == 1 and ("stream:s", calibrated[0]) in published
    fitted = Calibration.fit(psnr.astype(np.float64), distance.astype(np.float64), MODEL.weight)
    assert calibrated[0].calibration == fitted.to_dict() and calibrated[0].state == "fitted"
    machine = s.episodes.machine
    assert (s.policy.on, s.policy.off) == (fitted.alert_on, fitted.alert_off) == (machine.policy.on,
                                                                                   machine.policy.off)  # fmt: skip
    assert calibrated[0].alert.model_dump() == {"on": fitted.alert_on, "off": fitted.alert_off}
    assert calibrated[0].first_frame == 0 and calibrated[0].last_frame == 24
    assert store.calibration("s")["calibration"] == fitted.to_dict() and store.calibration("s")["model"] == "ped2"
    assert metrics.registry.get_sample_value("mnad_calibrations_total", {"stream": "s"}) == 1
    assert s.describe()["calibration"] == "fitted"
    # a restart: the manager finds the stored fit for this stream and model, not for another model
    restored = m.own_calibration("s", model)
    assert restored.current == fitted and restored.state == "fitted"
    assert m.own_calibration("s", SimpleNamespace(name="other", calibration=MODEL)).state == "model"
    assert store.calibration("s") is None  # a fit for another model is stale: dropped
    store.set_calibration("s", "ped2", fitted.to_dict(), 1.0)
    published.clear()
    s.reset_calibration()  # the API thread: returns once stored and published
    (reverted,) = published
    assert reverted[1].state == "model" and reverted[1].calibration == MODEL.to_dict()
    assert s.policy.on == MODEL.alert_on and store.calibration("s") is None
    store.close()


def test_explicit_thresholds_win_over_a_fit(tmp_path: Path) -> None:
    psnr, distance = normal_frames(MIN_FRAMES)
    fitted = Calibration.fit(psnr.astype(np.float64), distance.astype(np.float64), MODEL.weight)
    model = SimpleNamespace(name="ped2", calibration=MODEL, fps=10.0)
    m, store, _ = manager(tmp_path)
    assert m.policy(model, {"on": 0.7}, fitted).on == 0.7  # the stream's own value
    assert m.policy(model, {"off": 0.995}, fitted).on == 0.995  # a fitted `on` never falls below a set `off`
    assert m.policy(model, {"on": 0.2}, fitted).off == min(0.2, fitted.alert_off)
    store.close()
    m, store, _ = manager(tmp_path / "b", alert_on=0.5, alert_off=0.4)
    assert (m.policy(model, None, fitted).on, m.policy(model, None, fitted).off) == (0.5, 0.4)  # the settings'
    store.close()


# end to end ---------------------------------------------------------------------------------------------------------


def after_calibrated(out: list[dict], n: int) -> list[dict]:
    marks = [i for i, m in enumerate(out) if m["type"] == "calibrated"]
    return [m for m in out[marks[0] + 1 :] if m["type"] == "score"][:n] if marks else []


def stored_calibration(data_dir: Path, stream_id: str):
    with sqlite3.connect(data_dir / "service.sqlite3") as db:
        return db.execute("SELECT calibration FROM calibrations WHERE stream_id = ?", (stream_id,)).fetchone()


@pytest.mark.ped2
def test_calibrate_a_live_stream_end_to_end(serve_factory, h264_clip, tmp_path) -> None:
    data = tmp_path / "data"
    flags = ("--stream", str(h264_clip), "--frame-buffer", "64")  # a Ped2 clip looping as a 10 fps camera
    server = serve_factory(*flags, data_dir=data)
    with server.client() as c:
        sid = wait_for(lambda: c.get("/api/streams").json(), 10, message="stream")[0]["id"]
        model_cal = c.get("/api/models").json()["models"][0]["calibration"]
        assert c.get(f"/api/streams/{sid}/calibration").json()["state"] == "model"
        with connect(f"{server.ws_base}/ws/streams/{sid}", open_timeout=10) as ws:
            r = c.post(f"/api/streams/{sid}/calibration", json={"seconds": 2})
            assert r.status_code == 202 and r.json()["state"] == "collecting" and r.json()["target_frames"] == 20
            assert c.post(f"/api/streams/{sid}/calibration", json={"seconds": 5}).status_code == 409
            assert c.get(f"/api/streams/{sid}").json()["calibration"] == "collecting"
            progress = []
            while (state := c.get(f"/api/streams/{sid}/calibration").json())["state"] == "collecting":
                progress.append(state["progress"])
                assert len(progress) < 300, "no fit in 30 s"
                time.sleep(0.1)
            out = ws_messages(ws, lambda out: len(after_calibrated(out, 5)) == 5, 30)
        stream = c.get(f"/api/streams/{sid}").json()
        metrics = c.get("/metrics").text
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress), progress
    assert state["state"] == "fitted" and state["progress"] == 1.0 and state["frames"] == 20
    cal = state["calibration"]
    (message,) = [m for m in out if m["type"] == "calibrated"]
    assert message["calibration"] == cal and message["stream"] == sid and message["alert"]["on"] == cal["alert_on"]
    # the fit is Calibration.fit on exactly the frames collected, as the subscriber saw them
    scores = {m["frame"]: m for m in out if m["type"] == "score"}
    collected = [m for f, m in sorted(scores.items()) if state["first_frame"] <= f <= state["last_frame"]]
    assert len(collected) == 20 and not any(m["type"] == "dropped" for m in out)
    # ... of the measures the model's calibration scores (its region windows), which a stream's fit keeps
    psnr = np.array([m["region_psnr"] for m in collected])
    distance = np.array([m["region_distance"] for m in collected])
    model = Calibration(**model_cal)
    expected = Calibration.fit(psnr, distance, model.weight, model.regions, model.drift)  # the model's drift too
    assert cal == pytest.approx(expected.to_dict(), rel=1e-12)
    assert cal["psnr_mean"] != pytest.approx(model_cal["psnr_mean"], abs=1e-6)
    assert (stream["alert"]["on"], stream["alert"]["off"]) == (cal["alert_on"], cal["alert_off"])
    assert stream["calibration"] == "fitted"
    fitted = Calibration(**cal)
    for m in after_calibrated(out, 5):  # scored with the stream's own calibration from the next frame on
        assert scored_with(fitted, m)
        assert m["anomalous"] == (m["score"] >= cal["alert_on"])
    assert f'mnad_calibrations_total{{stream="{sid}"}} 1.0' in metrics
    assert json.loads(stored_calibration(data, sid)[0]) == cal

    with server.client() as c:  # revert, then fit again and keep that one
        r = c.delete(f"/api/streams/{sid}/calibration")
        assert r.status_code == 200 and r.json()["state"] == "model" and r.json()["calibration"] == model_cal
        assert c.get(f"/api/streams/{sid}").json()["alert"]["on"] == model_cal["alert_on"]
        assert stored_calibration(data, sid) is None
        assert c.post(f"/api/streams/{sid}/calibration", json={"seconds": 2}).status_code == 202
        second = wait_for(lambda: (s := c.get(f"/api/streams/{sid}/calibration").json())["state"] == "fitted" and s,
                          30, message="second fit")  # fmt: skip
    server.stop()

    server = serve_factory(*flags, data_dir=data)  # restart: same data dir, same start-time stream
    with server.client() as c:
        assert [s["id"] for s in c.get("/api/streams").json()] == [sid]
        state = c.get(f"/api/streams/{sid}/calibration").json()
        assert state["state"] == "fitted" and state["calibration"] == second["calibration"]
        assert state["fitted_at"] == second["fitted_at"]
        assert c.get(f"/api/streams/{sid}").json()["alert"]["on"] == second["calibration"]["alert_on"]
        with connect(f"{server.ws_base}/ws/streams/{sid}", open_timeout=10) as ws:
            out = ws_messages(ws, lambda out: sum(m["type"] == "score" for m in out) >= 3, 30)
        restored = Calibration(**second["calibration"])
        for m in (m for m in out if m["type"] == "score"):
            assert scored_with(restored, m)
        # bad requests
        for body in ({"seconds": 1}, {"seconds": 3601}, {}, {"seconds": 2, "fps": 5}, {"seconds": "soon"}):
            assert c.post(f"/api/streams/{sid}/calibration", json=body).status_code == 422, body
        for call in (c.get, c.delete):
            assert call("/api/streams/nope/calibration").status_code == 404
        assert c.post("/api/streams/nope/calibration", json={"seconds": 2}).status_code == 404
        # deleted mid-collection: the collection goes, and so does the stored fit
        assert c.post(f"/api/streams/{sid}/calibration", json={"seconds": 60}).status_code == 202
        assert c.delete(f"/api/streams/{sid}").status_code == 204
        assert c.get(f"/api/streams/{sid}/calibration").status_code == 404
        assert c.get("/healthz").status_code == 200
    assert stored_calibration(data, sid) is None
