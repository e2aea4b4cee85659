"""Units of what the dashboard shows: error maps, their pictures, what is kept per stream, alert and clip,
and the WebSocket token subprotocol."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from model.data import preprocess
from model.scoring import squared_error
from service.alerts import heatmap
from service.alerts.machine import AlertPolicy
from service.alerts.snapshots import AlertSnapshots
from service.alerts.views import ClipMaps, LiveView, View
from service.alerts.writer import AlertWriter
from service.api.auth import WS_PROTOCOL, accepted_subprotocol, subprotocol_token
from service.capture.buffer import Frame
from service.capture.video import decode_frame
from service.core.messages import Published, parse
from service.core.metrics import Metrics
from service.core.store import SqliteStore
from service.pipeline.engine import Engine, Scored
from service.pipeline.host import ModelHost
from service.pipeline.streams import Stream


def test_pixel_errors_are_rms_over_channels_in_pixel_units() -> None:
    pred = torch.ones(2, 3, 4, 5)
    target = torch.ones(2, 3, 4, 5)
    target[0] = -1  # full-scale error everywhere
    target[1, 0] = 0  # half scale in one of three channels
    e = heatmap.pixel_errors(squared_error(pred, target))
    assert e.shape == (2, 4, 5) and e.dtype == np.float32
    assert np.allclose(e[0], 1.0) and np.allclose(e[1], np.sqrt(0.25 / 3))


def test_shrink_keeps_rms_and_size_bound() -> None:
    error = np.zeros((256, 192), np.float32)
    error[:128] = 0.5
    small = heatmap.shrink(error, 96)
    assert small.shape == (96, 72) and small.dtype == np.uint8
    back = heatmap.expand(small)
    assert abs(back[:40].mean() - 0.5) < 0.01 and back[-40:].max() == 0
    assert heatmap.shrink(np.full((8, 8), 0.2, np.float32), 96).shape == (8, 8)  # never upsampled


def test_heatmap_is_transparent_where_prediction_is_right() -> None:
    error = np.zeros((32, 48), np.float32)
    error[8:16, 8:16] = 1.0
    rgba = heatmap.heatmap_rgba(error, 64, 96)
    assert rgba.shape == (64, 96, 4)
    assert rgba[0, 0, 3] == 0 and rgba[-1, -1, 3] == 0
    assert rgba[24, 24, 3] == int(heatmap.OPACITY * 255)
    picture = np.full((64, 96, 3), 128, np.uint8)
    blended = heatmap.overlay(picture, error)
    assert np.array_equal(blended[0, 0], picture[0, 0]) and not np.array_equal(blended[24, 24], picture[24, 24])


def test_render_fits_width_and_takes_grey_model_input() -> None:
    grey = np.zeros((240, 360, 1), np.uint8)
    assert heatmap.render(grey, None, 640, overlaid=True).shape == (240, 360, 3)
    image = heatmap.render(grey, np.zeros((32, 48), np.float32), 180, overlaid=True)
    assert image.shape == (120, 180, 3)
    png = heatmap.render_heatmap(grey, np.ones((32, 48), np.float32), 180)
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape == (120, 180, 4)
    assert heatmap.jpeg(image)[:2] == b"\xff\xd8"


def test_clip_maps_append_read_and_close(tmp_path: Path) -> None:
    maps = ClipMaps(tmp_path, "c1")
    rng = np.random.default_rng(0)
    errors = [rng.random((64, 96), dtype=np.float32) for _ in range(3)]
    for e in errors:
        maps.append(e)
    for k, e in enumerate(errors):
        assert np.array_equal(ClipMaps.read(tmp_path, "c1", k), heatmap.expand(heatmap.shrink(e, 96)))
    assert ClipMaps.read(tmp_path, "c1", 3) is None and ClipMaps.read(tmp_path, "other", 0) is None
    maps.close()
    maps.append(errors[0])  # a late score after the job ended: ignored, the file is not reopened
    assert (tmp_path / "c1.errors.u8").stat().st_size == 3 * 64 * 96


def test_decode_frame_seeks_to_the_index(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (32, 16))
    for i in range(20):
        writer.write(np.full((16, 32, 3), i * 10, np.uint8))
    writer.release()
    assert decode_frame(path, 0)[0, 0, 0] == 0 and decode_frame(path, 13)[0, 0, 0] == 130
    assert decode_frame(path, 20) is None


def test_live_view_keeps_latest_and_bounded_history() -> None:
    live = LiveView(history=3)
    for i in range(5):
        live.add(View(i, float(i), i / 10, np.zeros((2, 2, 1), np.uint8), None))
    assert live.latest.frame == 4 and [r["frame"] for r in live.recent(10)] == [2, 3, 4]
    assert live.recent(1) == [{"frame": 4, "captured": 4.0, "score": 0.4}]


class Recorder:
    def __init__(self) -> None:
        self.saved: list[tuple[int, int]] = []

    def save(self, alert_id: int, view: View) -> None:
        self.saved.append((alert_id, view.frame))


def test_stream_stores_the_peak_frame_of_each_episode(tmp_path: Path) -> None:
    """Opened on the third frame above `on`: the snapshot is the run's peak (not the opening frame); a higher
    peak later in the episode replaces it when the episode closes."""
    store = SqliteStore(tmp_path / "db.sqlite3")
    snapshots = Recorder()
    model = SimpleNamespace(name="m")
    messages: Published = []
    writer = AlertWriter(messages.extend)  # alert messages come from the writer, once stored
    writer.start()
    stream = Stream("s", "rtsp://x/y", "cam", model, None, AlertPolicy(0.5, 0.4, 3, 2), "api", store, Metrics(),
                    writer, snapshots)  # fmt: skip
    scores = [0.1, 0.6, 0.9, 0.7, 0.95, 0.6, 0.1, 0.1, 0.2, 0.7, 0.6, 0.55, 0.1, 0.1]
    for i, s in enumerate(scores):
        frame = Frame(i, 0, float(i), np.zeros((4, 4, 1), np.uint8), np.full((8, 8, 3), i, np.uint8))
        messages += stream.on_scored(Scored(frame, 30.0, 0.1, s, np.zeros((4, 4), np.float32)))
    writer.stop()
    opens = [m for topic, m in messages if m.type == "alert_open" and topic == "alerts"]
    assert [m.peak_frame for m in opens] == [2, 9]
    assert snapshots.saved == [(1, 2), (1, 4), (2, 9)]  # second episode's peak never moved: stored once
    assert opens[0].thumbnail_url == "/api/alerts/1/thumbnail.jpg"
    assert {m.type for _, m in messages} == {"score", "alert_open", "alert_close"}
    assert all(parse(m.wire()) == m for _, m in messages)  # each model reads back what it writes
    assert stream.live.latest.picture[0, 0, 0] == len(scores) - 1  # the decoded picture, not the model input
    store.close()


def test_open_alert_follows_a_rising_peak_at_a_bounded_rate(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    snapshots = Recorder()
    writer = AlertWriter(lambda messages: None)
    writer.start()
    stream = Stream("s", "rtsp://x/y", "cam", SimpleNamespace(name="m"), None, AlertPolicy(0.5, 0.4, 3, 2), "api",
                    store, Metrics(), writer, snapshots)  # fmt: skip
    scores = {i: 0.6 for i in range(1, 30)} | {4: 0.7, 10: 0.8, 26: 0.9}  # at 10 fps: peaks 0.3 s, 0.6 s, 1.6 s apart
    peaks = {}
    for i in range(32):
        frame = Frame(i, 0, i / 10, np.zeros((4, 4, 1), np.uint8))
        stream.on_scored(Scored(frame, 30.0, 0.1, scores.get(i, 0.1), np.zeros((4, 4), np.float32)))
        writer.flush()
        peaks[i] = store.alert(1)["peak_frame"] if store.alert(1) else None
    assert snapshots.saved == [(1, 1), (1, 10), (1, 26)]  # opened; 2 s later; closed
    writer.stop()
    assert peaks[19] == 1 and peaks[23] == 10 and peaks[31] == 26  # opened at 0.1 s: refreshed at 2.1 s
    store.close()


def test_alert_snapshots_written_and_named_in_the_row(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    alert_id = store.reserve_alert_id()
    store.open_alert(alert_id, "s", "m", 1.0, 0, 0.9, 0)
    snaps = AlertSnapshots(tmp_path / "alerts", store)
    error = np.zeros((32, 48), np.float32)
    error[10:20, 10:20] = 1
    snaps.save(alert_id, View(0, 1.0, 0.9, np.full((480, 720, 3), 90, np.uint8), error))
    row = store.alert(alert_id)
    thumb = cv2.imread(str(snaps.path(row["thumbnail"])))
    heat = cv2.imread(str(snaps.path(row["heatmap"])), cv2.IMREAD_UNCHANGED)
    assert thumb.shape == (213, 320, 3) and heat.shape == (213, 320, 4)
    assert snaps.path("../db.sqlite3") is None and snaps.path(None) is None
    store.close()
    again = SqliteStore(tmp_path / "db.sqlite3")  # the migration is idempotent
    assert again.alert(alert_id)["thumbnail"] == f"{alert_id}.jpg"
    again.close()


@pytest.mark.parametrize("token", ["s3cret", "with spaces/+=and ünïcode"])
def test_subprotocol_token(token: str) -> None:
    b64 = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    offered = [WS_PROTOCOL, f"mnad.token.{b64}"]
    assert subprotocol_token(offered) == token
    assert subprotocol_token([WS_PROTOCOL]) is None and subprotocol_token(["mnad.token.%%%"]) is None
    assert accepted_subprotocol(SimpleNamespace(scope={"subprotocols": offered})) == WS_PROTOCOL
    assert accepted_subprotocol(SimpleNamespace(scope={"subprotocols": []})) is None


def test_engine_error_maps_are_the_prediction_error_behind_psnr(models_dir, clip_frames) -> None:
    """Each scored frame carries its error map at the model's size; its mean square is the MSE the PSNR
    was computed from, so the heatmap shows exactly the error the score is made of."""
    torch.set_num_threads(1)
    model = ModelHost.load_dir(models_dir, torch.device("cpu")).get(None)
    rows: list[Scored] = []
    done = threading.Event()
    expected = 12 - model.config.window + 1

    class Owner:
        def on_scored(self, s: Scored):
            rows.append(s)
            if len(rows) == expected:
                done.set()
            return []

    engine = Engine(4, 0.0, lambda messages: None)
    engine.start()
    try:
        lane = engine.add_lane("l", model, 16, Owner())
        for i, f in enumerate(clip_frames[:12]):
            assert lane.buffer.put(Frame(i, 0, time.time(), preprocess(f, model.config)), block=True, timeout=30)
        assert done.wait(60)
    finally:
        engine.stop()
    for s in rows:
        assert s.error.shape == (model.config.height, model.config.width) and s.error.dtype == np.float32
        assert abs(10 * np.log10(1 / np.mean(np.square(s.error, dtype=np.float64))) - s.psnr) < 1e-3
