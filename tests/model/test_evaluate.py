"""The AUC protocol: label/score alignment, EER, and the evaluate command on real Ped2 clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import typer

from model import checkpoint, masks
from model.commands.evaluate import describe_events, where_it_alarms
from model.commands.evaluate import main as evaluate
from model.commands.train import main as train
from model.data import load_clips
from model.metrics import aligned_labels, by_clip, equal_error_rate, labels_beside, metrics
from model.scoring import score_clips


def test_events_are_described_when_nothing_was_detected_and_no_normal_frame_was_scored() -> None:
    """A refit fold of footage that is anomalous throughout: no delay and no share to print, and no crash."""
    e = {"detected": 0, "events": 2, "median_delay_frames": None, "median_delay_s": None, "false_episodes": 0}
    assert describe_events({**e, "normal_above_on_share": None}) == (
        "0/2 events alerted, median delay n/a, 0 false episodes, no normal frames scored"
    )
    assert describe_events({**e, "normal_above_on_share": 0.25}).endswith("25.0 % of normal frames above alert_on")


def test_where_it_alarms_names_the_clips_whose_normal_frames_alarm_most_first() -> None:
    e = {"clips": ["01", "02", "05"], "clip_normal_frames": [56, 90, 21], "clip_normal_above_on": [4, 0, 20]}
    assert where_it_alarms(e) == "05 20 of 21, 01 4 of 56"
    assert where_it_alarms({**e, "clip_normal_above_on": [0, 0, 0]}) == ""


def test_aligned_labels_drop_each_clips_first_frames() -> None:
    labels = np.array([0, 0, 1, 1, 0, 9, 9, 0, 1])  # clip A: 5 frames, clip B: 4 frames
    np.testing.assert_array_equal(aligned_labels(labels, [5, 4], skip=2), [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(aligned_labels(labels[None], [5, 4], skip=0), labels)  # (1, N) as Ped2 stores it
    with pytest.raises(ValueError, match="9 labels for 10 frames"):
        aligned_labels(labels, [5, 5], skip=0)


def test_scored_labels_are_cut_back_per_clip_and_found_beside_the_footage(tmp_path: Path) -> None:
    scored = [SimpleNamespace(psnr=np.zeros(3)), SimpleNamespace(psnr=np.zeros(2))]
    a, b = by_clip(np.array([1, 0, 1, 0, 1]), scored)
    assert a.tolist() == [True, False, True] and b.tolist() == [False, True]
    (tmp_path / "frames").mkdir()
    assert labels_beside(tmp_path / "frames") is None
    np.save(tmp_path / "frame_labels_cam.npy", np.zeros(5))
    assert labels_beside(tmp_path / "frames") == tmp_path / "frame_labels_cam.npy"


def test_metrics_on_known_rankings() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    perfect = metrics(labels, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert perfect == {"auc": 1.0, "eer": 0.0}
    inverted = metrics(labels, -np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert inverted["auc"] == 0.0 and inverted["eer"] == 1.0
    assert equal_error_rate(labels, np.array([0.1, 0.2, 0.8, 0.3, 0.7, 0.9])) == pytest.approx(1 / 3)


def test_evaluate_on_ped2_clips(ped2: Path, tmp_path: Path) -> None:
    """Train a tiny model on three Ped2 training clips, evaluate it on two test clips."""
    train_root = tmp_path / "training" / "frames"
    for clip in ("01", "02", "03"):
        shutil.copytree(ped2 / "training" / "frames" / clip, train_root / clip)
    weights = tmp_path / "tiny.safetensors"
    train(
        tmp_path / "training",
        out=weights,
        fps=10,
        base_width=2,
        height=24,
        width=32,
        epochs=1,
        holdout=0.34,
        device="cpu",
        precision="fp32",
    )
    test_root = tmp_path / "testing" / "frames"
    all_labels = np.load(ped2 / "frame_labels_ped2.npy").reshape(-1)
    for clip in ("01", "02"):
        shutil.copytree(ped2 / "testing" / "frames" / clip, test_root / clip)
    np.save(tmp_path / "labels.npy", all_labels[:360])  # clips 01 and 02: 180 frames each
    out = tmp_path / "eval"
    evaluate(weights, tmp_path / "testing", labels=tmp_path / "labels.npy", out=out, device="cpu")
    report = json.loads((out / "report.json").read_text())
    assert report["speed"]["frames"] == 2 * 176
    clips = report["clips"]
    assert [c["first_frame"] for c in clips] == [4, 4]
    assert clips[0]["labels"] == all_labels[4:180].tolist() and clips[1]["labels"] == all_labels[184:360].tolist()
    for mode in ("paper", "streaming"):
        for term in ("fused", "psnr_only", "distance_only"):
            assert 0 <= report["metrics"][mode][term]["auc"] <= 1
    # streaming scores are the checkpoint calibration applied frame by frame
    assert len(clips[0]["streaming_score"]) == 176
    assert sorted(p.name for p in out.glob("*.png")) == ["clip_01.png", "clip_02.png"]
    assert report["update_threshold"] == 0.01  # the paper's, for the prediction variant

    # the ablation switch: never (0) vs always (1: the weighted error of pixels in [0, 1] stays below it) update
    runs = {}
    for threshold in (0.0, 1.0):
        evaluate(weights, tmp_path / "testing", labels=tmp_path / "labels.npy", out=out, device="cpu", plots=False,
                 update_threshold=threshold)  # fmt: skip
        runs[threshold] = json.loads((out / "report.json").read_text())
        assert runs[threshold]["update_threshold"] == threshold and runs[threshold]["speed"]["frames"] == 2 * 176
    assert runs[0.0]["clips"][0]["distance"] != runs[1.0]["clips"][0]["distance"]
    assert runs[0.0]["clips"][0]["labels"] == runs[1.0]["clips"][0]["labels"]

    # --mask: scored as a stream with that mask scores (score_clips' `watched`), the polygons in the report
    polygons = [[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]  # the left half
    evaluate(weights, tmp_path / "testing", labels=tmp_path / "labels.npy", out=out, device="cpu", plots=False,
             inference="fp32", mask=json.dumps(polygons))  # fmt: skip
    masked = json.loads((out / "report.json").read_text())
    ck = checkpoint.load(weights)
    watched = torch.from_numpy(masks.watched_map(polygons, ck.config.height, ck.config.width))
    expected = score_clips(ck.build("cpu"), load_clips(tmp_path / "testing", ck.config, ck.fps), 0.01, watched=watched)
    assert masked["mask"] == polygons and report["mask"] == []
    assert np.allclose(masked["clips"][1]["psnr"], expected[1].psnr, atol=1e-4)
    assert not np.allclose(masked["clips"][1]["psnr"], report["clips"][1]["psnr"], atol=1e-2)
    with pytest.raises(typer.BadParameter, match="3 or more"):
        evaluate(weights, tmp_path / "testing", labels=tmp_path / "labels.npy", out=out, mask="[[[0,0],[1,0]]]")
