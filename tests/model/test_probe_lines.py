"""scripts/probe_lines.py: what the validation probes share, the swap of validation's names and the pick."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from model import validation
from model.calibration import Calibration, Drift
from model.scoring import ClipScores

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import probe_lines  # noqa: E402


def scored(name: str, rng: np.random.Generator, frames: int = 40, shift: float = 0.0) -> ClipScores:
    """A stream measured at every window validation weighs (6 error columns, 4 distance columns)."""
    psnr = rng.normal(30 - shift, 1, (frames, len(validation.ERROR_WINDOWS)))
    distance = rng.normal(1 + shift / 10, 0.1, (frames, len(validation.DISTANCE_WINDOWS)))
    return ClipScores(name, psnr[:, 0], distance[:, 0], 4, psnr, distance, np.ones(frames), psnr + 3)


def test_choose_patched_swaps_validations_names_only_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "DRIFTS", (Drift(), Drift(30, 1.0)))  # a smaller grid, the same code
    rng = np.random.default_rng(0)
    normal = [scored("n0", rng), scored("n1", rng)]
    label = np.zeros(40, dtype=bool)
    label[20:30] = True
    anomalous = [scored("a0", rng), scored("b0", rng)]
    anomalous[0].region_psnr[label] -= 3
    held = SimpleNamespace(labels=[label, np.zeros(40, dtype=bool)], benign=[None, "exposure"], busy=[False, False])
    fitted, sent = [], []

    class Counting(Calibration):
        @classmethod
        def fit(cls, *args, **kwargs):
            fitted.append(1)
            return super().fit(*args, **kwargs)

    landed_scores = validation._Streams.scores

    def sends(self, calibration):
        sent.append(1)
        return landed_scores(self, calibration)

    table = probe_lines.choose_patched(held, normal, anomalous, Calibration=Counting, **{"_Streams.scores": sends})
    assert fitted and sent  # both swaps reached validation.choose
    assert validation.Calibration is Calibration and validation._Streams.scores is landed_scores  # and are undone
    plain = validation.choose(
        normal, anomalous, held.labels, benign=held.benign, busy=held.busy, drifts=validation.DRIFTS
    )
    assert [c.auc for c, _ in table] == [c.auc for c, _ in plain]  # swaps that change nothing give the landed table


def test_pick_over_names_the_option_whose_setting_validation_takes() -> None:
    def row(auc: float, above: float) -> tuple[validation.Choice, Calibration]:
        cal = Calibration(30, 1, 1, 0.1, 0.5, 0.8, 0.7, 100)
        return validation.Choice(0, 0, 0.5, auc, benign_above_on=above), cal

    tables = [(1, [row(0.90, 0.0), row(0.99, 0.2)]), (3, [row(0.95, 0.01)]), (5, [row(0.93, 0.0)])]
    option, best = probe_lines.pick_over(tables)
    assert option == 3 and best.auc == 0.95  # 0.99 alarms on 20 % of a benign kind: not calm, not picked


def test_a_probe_validates_on_the_kinds_asked_for(held_out: list[Path]) -> None:
    from model import synthetic

    parser = probe_lines.parser("A probe.")
    shipped = str(ROOT / "weights" / "ped2.safetensors")
    args = parser.parse_args([shipped, *map(str, held_out), "--draws", "1", "--kinds", "all,vehicle"])
    assert args.kinds == (*synthetic.KINDS, "vehicle")
    events = {f.kind for f in probe_lines.held_out(args).fakes} - set(synthetic.BENIGN)
    assert events == {*synthetic.KINDS, "vehicle"}
    args = parser.parse_args([shipped, *map(str, held_out), "--draws", "1", "--kinds", "blur"])
    assert {f.kind for f in probe_lines.held_out(args).fakes} - set(synthetic.BENIGN) == {"blur"}
    default = parser.parse_args([shipped, *map(str, held_out), "--draws", "1"])
    assert {f.kind for f in probe_lines.held_out(default).fakes} - set(synthetic.BENIGN) == set(synthetic.KINDS)
    with pytest.raises(SystemExit):
        parser.parse_args([shipped, *map(str, held_out), "--kinds", "bikes"])
