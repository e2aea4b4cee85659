"""scripts/ensemble_probe.py: two members' streaming scores averaged, thresholds refitted on the mean."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from model import synthetic
from model.calibration import Calibration, Drift

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from ensemble_probe import Member, judge, mean_of  # noqa: E402


def member(seed: int, label: np.ndarray, busy_stream: np.ndarray) -> Member:
    """A member scored on two normal clips and two streams (one event, one busier day), without a network:
    PSNR with its own noise, lower inside the event; its calibration fitted as calibrate --select fits it."""
    rng = np.random.default_rng(seed)
    m = Member.__new__(Member)
    m.name = f"m{seed}"
    m.normal = [(rng.normal(30, 1, 150), rng.normal(1, 0.1, 150)) for _ in range(2)]
    event = rng.normal(30, 1, len(label)) - 1.5 * label
    m.anomalous = [
        (event, rng.normal(1, 0.1, len(label))),
        (busy_stream + rng.normal(0, 0.5, 150), rng.normal(1, 0.1, 150)),
    ]
    fit_on = [*m.normal, m.anomalous[1]]
    psnr, distance = (np.concatenate([x[i] for x in fit_on]) for i in (0, 1))
    m.calibration = Calibration.fit(psnr, distance, 0.8, drift=Drift(30, 1.0), lengths=[150, 150, 150])
    return m


def test_each_member_sends_what_its_calibration_sends_and_the_ensemble_the_mean() -> None:
    label = np.zeros(200, bool)
    label[100:140] = True
    busy = np.full(150, 29.5)  # a busier day: a little lower PSNR, normal
    members = [member(s, label, busy) for s in (1, 2)]
    senders = [m.sender([1]) for m in members]
    for m, send in zip(members, senders):
        fit, streams = send(None)
        assert np.isclose(np.quantile(fit, 0.99), m.calibration.alert_on)  # the stored fit's own thresholds
        assert np.allclose(streams[0], m.calibration.stream_scores(*m.anomalous[0]))
        _, without = send(1)  # refitted on the normal clips alone
        refit = Calibration.fit(*(np.concatenate([x[i] for x in m.normal]) for i in (0, 1)), 0.8,
                                m.calibration.regions, m.calibration.drift, [150, 150])  # fmt: skip
        assert np.allclose(without[1], refit.stream_scores(*m.anomalous[1]))
    fit, streams = mean_of(senders)(None)
    assert np.allclose(fit, (senders[0](None)[0] + senders[1](None)[0]) / 2)
    assert np.allclose(streams[0], (senders[0](None)[1][0] + senders[1](None)[1][0]) / 2)

    fakes = [
        synthetic.SyntheticClip("a-paste0", "paste", np.zeros((200, 1, 1, 1), np.uint8), label),
        synthetic.SyntheticClip("a-crowd", "crowd", np.zeros((150, 1, 1, 1), np.uint8), np.zeros(150, bool)),
    ]
    labels, benign = [label, np.zeros(150, bool)], [None, "crowd"]
    alone = [judge(m.name, s, fakes, labels, benign, [1], 10.0) for m, s in zip(members, senders)]
    both = judge("mean", mean_of(senders), fakes, labels, benign, [1], 10.0)
    assert both["auc"] > max(a["auc"] for a in alone)  # independent noise averages out, the event stays
    assert set(both["kinds"]) == {"paste"} and set(both["benign_above_on"]) == {"crowd"}
    assert both["alert_on"] == np.quantile(mean_of(senders)(None)[0], 0.99)
