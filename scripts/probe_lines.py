"""What the validation-only probes in scripts/ share: their validation streams, and the line each prints for
the setting `train` would choose from a table of candidates (`validation.choose`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from model import synthetic, validation
from model.calibration import Calibration
from model.data import Clip
from model.scoring import ClipScores


def streams(
    clips: Sequence[Clip], window: int, seeds: Sequence[int]
) -> tuple[list[synthetic.SyntheticClip], list[np.ndarray], list[str | None], list[bool]]:
    """Validation's streams of `clips` for `seeds`, their labels (scored frames only), each one's benign kind
    (None for an event's stream) and whether it is a busier day: what `validation.choose` takes."""
    fakes = validation.streams(clips, window, seeds)
    labels = [f.labels[window - 1 :] for f in fakes]
    benign = [f.kind if f.kind in synthetic.BENIGN else None for f in fakes]
    return fakes, labels, benign, [f.kind in synthetic.BUSY for f in fakes]


def setting(choice: validation.Choice, error: Callable[[int], str] = str) -> str:
    """A chosen setting in words; `error` names the error window (a probe may encode more in its side)."""
    return (
        f"error window {error(choice.error_window)}, distance window {choice.distance_window}"
        f"{' relative' if choice.distance_relative else ''}, λ {choice.weight}{validation.drift_text(choice.drift)}"
    )


def chosen(
    name: str,
    table: Sequence[tuple[validation.Choice, Calibration]],
    anomalous: Sequence[ClipScores],
    fakes: Sequence[synthetic.SyntheticClip],
    labels: Sequence[np.ndarray],
    error_windows: Sequence[int] = validation.ERROR_WINDOWS,
    error: Callable[[int], str] = str,
    extra: str = "",
) -> str:
    """The line for the setting `validation.pick` takes from `table`: its AUC, setting, worst benign kind
    and the fused score's AUC per anomaly kind."""
    best, calibration = validation.pick(table)
    columns = validation.setting_columns(calibration, error_windows, validation.DISTANCE_WINDOWS)
    measures = [s.measures(*columns, calibration.distance_relative) for s in anomalous]
    kinds, _ = validation.per_kind(fakes, labels, [calibration.stream_scores(p, d) for p, d in measures], measures)
    return (
        f"{name}: validation AUC {100 * best.auc:.2f} % ({setting(best, error)}); worst benign kind above alert_on "
        f"{100 * best.benign_above_on:.1f} %; {extra}fused AUC per kind: "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in kinds.items())
    )
