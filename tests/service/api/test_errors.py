"""Domain errors: raised by the managers, mapped to HTTP statuses and the error body in one handler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fakes import fake_model
from fastapi.testclient import TestClient

from service.alerts.writer import AlertWriter
from service.api.errors import status_for
from service.app import create_app
from service.core.exceptions import (
    ClipNotFound,
    DomainError,
    FrameNotFound,
    NotAVideo,
    StreamLimit,
    StreamNotFound,
    UnknownModel,
    UnreadableVideo,
)
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.core.store import SqliteStore
from service.pipeline.calibration import CalibrationBusy
from service.pipeline.engine import Engine
from service.pipeline.host import ModelHost
from service.pipeline.streams import StreamManager


def test_each_domain_error_has_its_status() -> None:
    assert status_for(StreamNotFound("s")) == status_for(ClipNotFound("c")) == status_for(FrameNotFound("f")) == 404
    assert status_for(StreamLimit(4)) == status_for(CalibrationBusy("busy")) == 409
    assert status_for(UnknownModel("x", ["ped2"])) == status_for(UnreadableVideo("too short")) == 422
    assert status_for(NotAVideo("zeros")) == 415
    assert status_for(DomainError("unclassified")) == 500
    assert str(StreamLimit(4)) == "stream limit reached (4, setting max_streams)"


def test_managers_raise_domain_errors_not_key_or_overflow_errors(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    writer = AlertWriter(lambda messages: None)
    engine = Engine(4, 0.0, lambda messages: None)  # not started: lanes are added, nothing is scored
    m = StreamManager(Settings(_env_file=None, max_streams=1), store, engine, Metrics(), writer)
    model = fake_model()
    with pytest.raises(StreamNotFound, match="no stream 'nope'"):
        m.delete("nope")
    absent = str(tmp_path / "absent.avi")  # a local file that is not there: its reader retries, reads nothing
    m.start(absent, "one", model, origin="cli", persist=False)  # the one stream max_streams allows
    try:
        with pytest.raises(StreamLimit):
            m.start(absent, "two", model, origin="cli", persist=False)
    finally:
        m.stop_all()
    with pytest.raises(UnknownModel, match="unknown model 'nope'"):
        ModelHost(torch.device("cpu")).get("nope")
    store.close()


def test_the_app_answers_domain_errors_with_their_status_and_the_error_body(tmp_path: Path) -> None:
    app = create_app(Settings(_env_file=None, data_dir=tmp_path, models_dir=tmp_path))
    client = TestClient(app)  # no lifespan: no models needed for these routes
    r = client.delete("/api/streams/nope")
    assert r.status_code == 404 and r.json() == {"detail": "no stream 'nope'"}
    r = client.post("/api/streams/nope/calibration", json={"seconds": 5})
    assert r.status_code == 404 and r.json() == {"detail": "no stream 'nope'"}
    r = client.get("/api/clips/nope")
    assert r.status_code == 404 and r.json() == {"detail": "no clip 'nope'"}
    for path in ("/api/alerts/7", "/api/alerts/7/thumbnail.jpg", "/api/alerts/7/heatmap.png"):
        r = client.get(path)
        assert r.status_code == 404 and r.json() == {"detail": "no alert 7"}, path
    store = app.state.runtime.store
    id = store.reserve_alert_id()
    store.open_alert(id, "s", "ped2", 1.0, 10, 0.9, 12)  # an episode whose pictures are not stored (yet)
    assert client.get(f"/api/alerts/{id}").status_code == 200
    r = client.get(f"/api/alerts/{id}/heatmap.png")
    assert r.status_code == 404 and r.json() == {"detail": f"alert {id} has no stored heatmap"}
