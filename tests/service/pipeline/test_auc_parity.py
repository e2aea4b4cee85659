"""The bar: the frame-level AUC computed from what the WebSocket delivered for all 12 Ped2 test clips
is within 0.5 points of `evaluate`'s streaming AUC, with the shipped checkpoint.

Each test clip is encoded losslessly (FFV1, the upload parity test's writer; the decoded frames are
checked equal to the source JPEGs, which are what `evaluate` reads), uploaded to a real `serve`
(POST /api/clips: scored as fast as the engine goes, not at 10 fps) and every per-frame score is
collected from /ws/clips/{id}, not from the REST result. A clip's first 4 frames have no score; their
labels are dropped (`model.metrics.aligned_labels`, the paper's protocol).

The reference is `model.commands.evaluate.main` itself, run in-process into a tmp dir (its report.json:
streaming AUC and every frame's streaming score). Both sides run on the CPU with one torch thread and
the same `--inference` setting (`auto`, the default of both); the path each resolved to (bf16 where
the CPU has AVX512-BF16, else fp32) is asserted identical, since bf16 and fp32 scores differ by up to
~0.02 and the per-frame check is 1e-3. Uploads go one at a time, so the engine scores one clip per
batch, while `evaluate` batches the 12 clips in lockstep: a path whose result depends on the batch
size would fail the per-frame check here, which is the point (the service batches streams too).
About 1 min on a 2-core CPU with the bf16 path (1,962 frames scored twice).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from support import wait_for
from websockets.sync.client import connect

from model.commands.evaluate import main as evaluate
from model.metrics import aligned_labels

pytestmark = pytest.mark.ped2

SHIPPED = Path(__file__).resolve().parents[3] / "weights" / "ped2.safetensors"
INFERENCE = "auto"  # the default of `serve` and of `evaluate`; both resolve it the same way here
AUC_POINTS = 0.5
# The bar is on the score: 1e-3. bf16 convolutions round differently at another batch size (the
# engine scores one clip per batch, evaluate 12), which moves PSNR by ~1e-3 dB (measured 0.0011 on
# one frame) and the tiny feature distance by up to a few percent (see tests/model/test_inference.py).
SCORE_ATOL = 1e-3
TOLERANCE = {"score": SCORE_ATOL, "psnr": 0.01, "distance": 0.05}  # score and PSNR absolute, distance relative


def clip_feed(url: str, headers: dict, timeout: float) -> list[dict]:
    """Every message of /ws/clips/{id} up to and including 'done' (the server closes after it)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        while time.monotonic() < deadline and not (out and out[-1]["type"] == "done"):
            try:
                out.append(json.loads(ws.recv(timeout=1)))
            except TimeoutError:
                continue
    return out


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides the tiny test model: `serve` hosts the shipped checkpoint alone."""
    assert SHIPPED.is_file(), f"shipped checkpoint {SHIPPED} missing: it is part of the repository"
    root = tmp_path_factory.mktemp("shipped")
    (root / SHIPPED.name).symlink_to(SHIPPED)
    return root


@pytest.fixture(scope="module")
def report(ped2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    evaluate(SHIPPED, ped2 / "testing", labels=ped2 / "frame_labels_ped2.npy", out=out, device="cpu", plots=False,
             inference=INFERENCE)  # fmt: skip
    return json.loads((out / "report.json").read_text())


def test_websocket_auc_equals_evaluate_streaming_auc(serve_factory, report: dict, ped2: Path, tmp_path: Path) -> None:
    from conftest import decode, encode_ffv1

    server = serve_factory("--inference", INFERENCE)
    folders = sorted(p for p in (ped2 / "testing" / "frames").iterdir() if p.is_dir())
    assert [p.name for p in folders] == [c["name"] for c in report["clips"]] == [f"{i:02d}" for i in range(1, 13)]
    with server.client() as c:
        (hosted,) = c.get("/api/models").json()["models"]
        assert hosted["inference"]["path"] == report["speed"]["inference"]["path"], "service and evaluate differ"
        delivered: list[np.ndarray] = []
        lengths: list[int] = []
        worst_score = 0.0
        for folder, ref in zip(folders, report["clips"], strict=True):
            frames = np.stack([cv2.imread(str(f), cv2.IMREAD_COLOR) for f in sorted(folder.glob("*.jpg"))])
            clip = encode_ffv1(frames, tmp_path / f"{folder.name}.avi")
            assert np.array_equal(decode(clip), frames), f"clip {folder.name}: the FFV1 encoding is not lossless"
            lengths.append(len(frames))
            r = c.post("/api/clips", files={"file": (clip.name, clip.read_bytes(), "video/x-msvideo")})
            assert r.status_code == 202, r.text
            clip_id = r.json()["id"]
            messages = clip_feed(f"{server.ws_base}/ws/clips/{clip_id}", server.headers(), 120)
            assert messages and messages[-1]["type"] == "done" and messages[-1]["status"] == "done", messages[-1:]
            assert not [m for m in messages if m["type"] == "dropped"], "the WebSocket dropped scores"
            scores = [m for m in messages if m["type"] == "score"]
            first = ref["first_frame"]
            assert first == 4 and [m["frame"] for m in scores] == list(range(first, len(frames))), folder.name
            for key, ref_key in (("score", "streaming_score"), ("psnr", "psnr"), ("distance", "distance")):
                got = np.array([m[key] for m in scores])
                want = np.asarray(ref[ref_key])
                diff = np.abs(got - want) / (np.abs(want) if key == "distance" else 1.0)
                worst = f"clip {folder.name} {key}: frame {first + diff.argmax()} off by {diff.max():.3g}"
                assert diff.max() <= TOLERANCE[key], worst
                if key == "score":
                    worst_score = max(worst_score, float(diff.max()))
            delivered.append(np.array([m["score"] for m in scores]))
            wait_for(lambda id=clip_id: c.get(f"/api/clips/{id}").json()["status"] == "done", 30, message="job done")
    labels = aligned_labels(np.load(ped2 / "frame_labels_ped2.npy"), lengths, 4)
    assert labels.tolist() == [v for ref in report["clips"] for v in ref["labels"]], "labels aligned as evaluate does"
    service_auc = 100 * roc_auc_score(labels, np.concatenate(delivered))
    evaluate_auc = 100 * report["metrics"]["streaming"]["fused"]["auc"]
    print(f"frame-level AUC: WebSocket {service_auc:.3f} %, evaluate streaming {evaluate_auc:.3f} % "
          f"({len(labels)} frames, largest per-frame score difference {worst_score:.2g}, "
          f"inference path {hosted['inference']['path']})")  # fmt: skip
    assert abs(service_auc - evaluate_auc) <= AUC_POINTS
