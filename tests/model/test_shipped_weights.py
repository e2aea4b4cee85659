"""Regression: the shipped checkpoint, evaluated on the full Ped2 test split, still reaches the
AUCs its model card states (minus 0.5 points) and the issue's bars."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model import checkpoint
from model.commands.evaluate import main as evaluate

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
CARD = WEIGHTS / "README.md"
SHIPPED = WEIGHTS / "ped2.safetensors"


def card_auc(name: str) -> float:
    """An AUC from the card's results table row, e.g. `| fused, paper normalization | **95.12 %** | ...`."""
    match = re.search(rf"^\| {re.escape(name)} \| \**([0-9.]+) %", CARD.read_text(), re.MULTILINE)
    assert match, f"model card has no row '{name}'"
    return float(match.group(1))


def test_shipped_checkpoint_is_self_describing() -> None:
    ckpt = checkpoint.load(SHIPPED)
    assert ckpt.config.variant == "prediction" and ckpt.config.memory_size == 10 and ckpt.config.past_frames == 4
    assert ckpt.fps == 10.0
    assert ckpt.calibration is not None and ckpt.calibration.alert_off < ckpt.calibration.alert_on
    assert "ped2" in ckpt.provenance["data"] and ckpt.provenance["commit"]
    assert not any("testing" in c for c in ckpt.provenance["train_clips"])


@pytest.fixture(scope="module")
def report(ped2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    evaluate(SHIPPED, ped2 / "testing", labels=ped2 / "frame_labels_ped2.npy", out=out, device="cpu", plots=False)
    return json.loads((out / "report.json").read_text())


def card_value(name: str) -> float:
    """A number from the card's event table, e.g. `| events alerted (of 12) | 12 | ...`."""
    match = re.search(rf"^\| {re.escape(name)} \| \**([0-9.]+)", CARD.read_text(), re.MULTILINE)
    assert match, f"model card has no row '{name}'"
    return float(match.group(1))


def test_shipped_auc_matches_model_card(report: dict) -> None:
    m = report["metrics"]
    assert report["speed"]["frames"] == 2010 - 12 * 4
    for mode in ("paper", "streaming"):
        for term, row in (("fused", "fused"), ("psnr_only", "PSNR only"), ("distance_only", "feature distance only")):
            assert 100 * m[mode][term]["auc"] >= card_auc(f"{row}, {mode} normalization") - 0.5, (mode, term)


def test_shipped_alerts_match_model_card(report: dict) -> None:
    """The operator's view with the checkpoint's own calibration, as the card states it."""
    e = report["events"]["checkpoint"]
    assert e["detected"] >= card_value("events alerted (of 12)")
    assert e["false_episodes"] <= card_value("alert episodes on normal-only footage")
    assert 100 * e["normal_above_on_share"] <= card_value("normal frames above alert_on (%)") + 0.5
    assert e["median_delay_s"] <= card_value("median delay (s)") + 0.05


def test_shipped_paper_auc_clears_the_bar(report: dict) -> None:
    assert report["metrics"]["paper"]["fused"]["auc"] >= 0.930


@pytest.mark.xfail(strict=True, reason="known shortfall, see weights/README.md: streaming 80.1 %")
def test_shipped_streaming_auc_clears_the_bar(report: dict) -> None:
    assert report["metrics"]["streaming"]["fused"]["auc"] >= 0.920


def test_shipped_alerts_detect_events_early_and_never_on_normal_footage(report: dict) -> None:
    e = report["events"]["checkpoint"]
    assert e["detected"] >= 11 and e["false_episodes"] == 0 and e["median_delay_s"] <= 0.5


@pytest.mark.xfail(strict=True, reason="known shortfall, see weights/README.md: 16 % of normal test frames alarm")
def test_shipped_alerts_clear_the_false_alarm_bar(report: dict) -> None:
    assert report["events"]["checkpoint"]["normal_above_on_share"] <= 0.05


def test_memory_term_earns_its_place_in_the_paper_protocol(report: dict) -> None:
    m = report["metrics"]["paper"]
    assert m["fused"]["auc"] > max(m["psnr_only"]["auc"], m["distance_only"]["auc"])


@pytest.mark.xfail(
    strict=True, reason="known shortfall, see weights/README.md: streaming fused 80.1 % < PSNR alone 86.5 %"
)
def test_memory_term_earns_its_place_in_the_streaming_score(report: dict) -> None:
    m = report["metrics"]["streaming"]
    assert m["fused"]["auc"] > max(m["psnr_only"]["auc"], m["distance_only"]["auc"])


def test_the_distance_measure_transfers_to_the_test_camera(report: dict) -> None:
    """Normal test frames' memory distance stays within 3 calibration spreads of the held-out clips'
    (the checkpoint before this one was 13 spreads off, the one before that 47; as
    scripts/calibration_shift.py computes it)."""
    cal, clips = report["calibration"], report["clips"]
    normal = ~np.concatenate([np.asarray(c["labels"], bool) for c in clips])
    distance = np.concatenate([c["region_distance"] for c in clips])
    if cal["distance_relative"]:
        distance = distance / np.maximum(np.concatenate([c["distance_floor"] for c in clips]), 1e-12)
    shift = (distance[normal].mean() - cal["distance_mean"]) / cal["distance_std"]
    assert abs(shift) <= 3.0, shift
