"""The service runs the inference path MNAD_INFERENCE names, shows it, and falls back to fp32 rather than fail.

Fast-path score equality itself is tested in tests/model/test_inference.py; here: the engine with a
fast path stays within those tolerances of what evaluate's fp32 path computes for the same frames.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from support import reference_scores

from model import inference
from model.data import preprocess
from service.capture.buffer import Frame
from service.pipeline.engine import Engine
from service.pipeline.host import ModelHost

PSNR_ATOL_DB, DISTANCE_RTOL = 0.2, 0.05  # as tests/model/test_inference.py, which says why


class Collect:
    def __init__(self) -> None:
        self.rows = []

    def on_scored(self, scored) -> list:
        self.rows.append(scored)
        return []


def test_engine_on_bf16_path_stays_within_tolerance_of_evaluate(models_dir, clip_frames) -> None:
    if not inference.bf16_supported(torch.device("cpu")):
        pytest.skip("no native bf16 on this CPU: the engine would run fp32 (fallback tested elsewhere)")
    host = ModelHost.load_dir(models_dir, torch.device("cpu"), inference="bf16")
    model = host.get(None)
    assert model.inference.name == "bf16" and model.describe()["inference"]["path"] == "bf16"
    owner = Collect()
    engine = Engine(4, 0.0, lambda msgs: None)
    lane = engine.add_lane("l", model, 4, owner)
    engine.start()
    try:

        def feed() -> None:
            for i, f in enumerate(clip_frames):
                assert lane.buffer.put(Frame(i, 0, time.time(), preprocess(f, model.config)), block=True, timeout=30)

        t = threading.Thread(target=feed)
        t.start()
        t.join(60)
        expected = len(clip_frames) - model.config.window + 1
        deadline = time.monotonic() + 60
        while len(owner.rows) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.stop()
    ref = reference_scores(models_dir, clip_frames)  # fp32, score_clips
    assert [r.frame.index for r in owner.rows] == sorted(ref)
    got = np.array([[r.psnr, r.distance] for r in owner.rows])
    want = np.array([ref[r.frame.index][1:] for r in owner.rows])
    np.testing.assert_allclose(got[:, 0], want[:, 0], atol=PSNR_ATOL_DB, rtol=0)
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=DISTANCE_RTOL, atol=0)


def test_serve_shows_its_path_and_falls_back_instead_of_failing(serve_factory) -> None:
    server = serve_factory("--inference", "fp16")  # fp16 is CUDA only: on this CPU it must fall back, not fail
    with server.client() as c:
        (m,) = c.get("/api/models").json()["models"]
        metrics = c.get("/metrics").text
    assert m["inference"]["requested"] == "fp16" and m["inference"]["path"] == "fp32"
    assert "CUDA only" in m["inference"]["fallback"]
    assert 'inference="fp32"' in metrics and "inference_fallback=" in metrics
    assert "falls back to fp32" in server.log.read_text()

    server = serve_factory("--inference", "auto")
    with server.client() as c:
        (m,) = c.get("/api/models").json()["models"]
    assert m["inference"]["requested"] == "auto" and m["inference"]["path"] in inference.AUTO_ORDER["cpu"]
