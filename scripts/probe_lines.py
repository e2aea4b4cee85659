"""What the validation-only probes in scripts/ share: their validation streams, and the line each prints for
the setting `train` would choose from a table of candidates (`validation.choose`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
import torch
from torch import Tensor

from model import checkpoint, regions, synthetic, validation
from model.calibration import FUSION_WEIGHT, Calibration
from model.commands.evaluate import event_lines
from model.data import Clip, load_clip, load_clips
from model.metrics import aligned_labels, by_clip, event_report, labels_beside, report
from model.network import MemoryAE
from model.scoring import UPDATE_THRESHOLD, ClipScores


def streams(
    clips: Sequence[Clip], window: int, seeds: Sequence[int], kinds: Sequence[str] = synthetic.KINDS
) -> tuple[list[synthetic.SyntheticClip], list[np.ndarray], list[str | None], list[bool]]:
    """Validation's streams of `clips` for `seeds`, their labels (scored frames only), each one's benign kind
    (None for an event's stream) and whether it is a busier day: what `validation.choose` takes."""
    fakes = validation.streams(clips, window, seeds, kinds)
    return fakes, *validation.roles(fakes, window)


class HeldOut(NamedTuple):
    """One checkpoint's network and its validation streams on held-out clips (`streams`), unscored."""

    net: MemoryAE
    clips: list[Clip]
    fakes: list[synthetic.SyntheticClip]
    labels: list[np.ndarray]
    benign: list[str | None]
    busy: list[bool]
    update_threshold: float


def parser(doc: str, look: Path | None = None) -> argparse.ArgumentParser:
    """A probe's command line: a checkpoint, its held-out clips, and which draws of synthetic events; with `look`
    (where its report goes by default), `--test FOOTAGE --out DIR` for the one test look (`look_at_test`)."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    out.add_argument("checkpoint", type=Path)
    out.add_argument("clips", type=Path, nargs="+", help="held-out normal clips (frame folders or videos)")
    out.add_argument("--seed", type=int, default=0)
    out.add_argument("--draws", type=int, default=3)
    out.add_argument("--kinds", type=synthetic.parse_kinds, default=synthetic.KINDS, help=synthetic.KINDS_HELP)
    if look is not None:
        out.add_argument("--test", type=Path, help="labelled footage (Ped2 layout) for the one test look")
        out.add_argument("--out", type=Path, default=look, help="where --test writes report.json")
    return out


def held_out(args: argparse.Namespace) -> HeldOut:
    """What `parser`'s arguments name: the checkpoint's network, the clips at its size and rate, their streams."""
    ck = checkpoint.load(args.checkpoint)
    clips = [load_clip(c, ck.config, ck.fps) for c in args.clips]
    drawn = streams(clips, ck.config.window, range(args.seed, args.seed + args.draws), args.kinds)
    return HeldOut(ck.build(), clips, *drawn, UPDATE_THRESHOLD[ck.config.variant])


def scored(
    held: HeldOut,
    error_windows: Sequence[int] = validation.ERROR_WINDOWS,
    distance_windows: Sequence[int] = validation.DISTANCE_WINDOWS,
) -> tuple[list[ClipScores], list[ClipScores]]:
    """The held-out clips and their validation streams scored at every window `validation.choose` weighs."""
    net, threshold = held.net, held.update_threshold
    sides = {"error_windows": error_windows, "distance_windows": distance_windows}
    normal = validation.score_candidates(net, held.clips, threshold, **sides)
    anomalous = validation.score_candidates(net, [f.as_clip() for f in held.fakes], threshold, progress=True, **sides)
    return normal, anomalous


def setting(choice: validation.Choice, error: Callable[[int], str] = str, distance: Callable[[int], str] = str) -> str:
    """A chosen setting in words; `error` and `distance` name the windows (a probe may encode more in a side)."""
    return (
        f"error window {error(choice.error_window)}{' relative' if choice.error_relative else ''}, "
        f"distance window {distance(choice.distance_window)}"
        f"{' relative' if choice.distance_relative else ''}, λ {choice.weight}{validation.drift_text(choice.drift)}"
    )


def calm_psnr(
    table: Sequence[tuple[validation.Choice, Calibration]],
    error: Callable[[int], str] = str,
    distance: Callable[[int], str] = str,
) -> str:
    """The best calm PSNR-alone setting in `table`, for a probe's line ("" when none is calm)."""
    calm = [c for c, _ in table if c.weight == 1.0 and c.benign_above_on <= validation.MAX_BENIGN_ALARMS]
    psnr = max(calm, key=lambda c: c.auc, default=None)
    return f"calm PSNR alone {100 * psnr.auc:.2f} % ({setting(psnr, error, distance)}); " if psnr else ""


def chosen(
    name: str,
    table: Sequence[tuple[validation.Choice, Calibration]],
    anomalous: Sequence[ClipScores],
    fakes: Sequence[synthetic.SyntheticClip],
    labels: Sequence[np.ndarray],
    error_windows: Sequence[int] = validation.ERROR_WINDOWS,
    error: Callable[[int], str] = str,
    extra: str = "",
    distance_windows: Sequence[int] = validation.DISTANCE_WINDOWS,
    distance: Callable[[int], str] = str,
) -> str:
    """The line for the setting `validation.pick` takes from `table`: its AUC, setting, worst benign kind
    and the fused score's AUC per anomaly kind."""
    best, calibration = validation.pick(table)
    columns = validation.setting_columns(calibration, error_windows, distance_windows)
    measures = [calibration.measures(s, columns) for s in anomalous]
    kinds, _ = validation.per_kind(fakes, labels, [calibration.stream_scores(p, d) for p, d in measures], measures)
    return (
        f"{name}: validation AUC {100 * best.auc:.2f} % ({setting(best, error, distance)}); "
        f"worst benign kind above alert_on {100 * best.benign_above_on:.1f} %; {extra}fused AUC per kind: "
        + ", ".join(f"{k} {100 * v:.1f}" for k, v in kinds.items())
    )


@contextlib.contextmanager
def worst_window_as(function: Callable[[Tensor, int], regions.Worst]) -> Iterator[None]:
    """While open, `regions.worst_window` (what `score_step` measures every window with) is a probe's `function`."""
    previous = regions.worst_window
    regions.worst_window = function
    try:
        yield
    finally:
        regions.worst_window = previous


def choose_patched(
    held: HeldOut, normal: Sequence[ClipScores], anomalous: Sequence[ClipScores], **patches: object
) -> list[tuple[validation.Choice, Calibration]]:
    """`validation.choose` over every setting `train` weighs, with the names of model.validation in `patches`
    (`Calibration`, `_Streams.scores`, ...) swapped for a probe's while it runs: what the streams fit and send."""
    with contextlib.ExitStack() as swapped:
        for name, value in patches.items():  # a dotted name is an attribute of one of validation's classes
            *owner, attribute = name.split(".")
            target = getattr(validation, owner[0]) if owner else validation
            swapped.enter_context(mock.patch.object(target, attribute, value))
        return validation.choose(
            normal, anomalous, held.labels, benign=held.benign, busy=held.busy, drifts=validation.DRIFTS
        )


def pick_over(
    tables: Sequence[tuple[Hashable, Sequence[tuple[validation.Choice, Calibration]]]],
) -> tuple[Hashable, validation.Choice]:
    """`validation.pick` over the tables of several probe options: the option whose setting it takes, and that."""
    rows = [(option, choice, calibration) for option, table in tables for choice, calibration in table]
    best, calibration = validation.pick([(choice, cal) for _, choice, cal in rows])
    return next(option for option, _, cal in rows if cal is calibration), best


def coded_variants(
    held: HeldOut,
    variants: Sequence[str],
    code: int,
    measuring: AbstractContextManager[object],
    named: Callable[[int], str],
    axis: str = "error",
) -> tuple[list[tuple[validation.Choice, Calibration]], dict[str, list[int]]]:
    """Print `train`'s choice among the landed windows, each probe variant alone, and all of them.

    A probe window side is `k + code * (1 + i)` for variant i of landed side k, on the `axis` ("error" or
    "distance") windows; `measuring` is open while the streams are scored (it makes `regions.worst_window`
    measure such a side); `variants` name them and `named` names a side. Returns the whole table and the
    windows it was scored at."""
    windows = {"error": list(validation.ERROR_WINDOWS), "distance": list(validation.DISTANCE_WINDOWS)}
    windows[axis] += [k + code * (1 + i) for i in range(len(variants)) for k in windows[axis] if k]
    with measuring, torch.inference_mode():
        normal, anomalous = scored(held, windows["error"], windows["distance"])
    return print_options(held, normal, anomalous, windows, variants, code, named, axis), windows


def print_options(
    held: HeldOut,
    normal: Sequence[ClipScores],
    anomalous: Sequence[ClipScores],
    windows: dict[str, Sequence[int]],
    variants: Sequence[str],
    code: int,
    named: Callable[[int], str],
    axis: str = "error",
) -> list[tuple[validation.Choice, Calibration]]:
    """`train`'s choice from streams scored at `windows` ({"error": sides, "distance": sides}) among the landed
    sides (`side // code` 0), each variant's (`side // code` 1 + i) alone, and all of them: a line each.
    Returns the whole table (all of them as options)."""
    other = "distance" if axis == "error" else "error"
    names = {axis: named, other: str}
    table = validation.choose(
        normal, anomalous, held.labels, windows["error"], windows["distance"],
        benign=held.benign, busy=held.busy, drifts=validation.DRIFTS,
    )  # fmt: skip
    options = [("landed options", {0}), *((f"{name} alone", {1 + i}) for i, name in enumerate(variants))]
    for name, allowed in (*options, ("all of them as options", set(range(len(variants) + 1)))):
        rows = [r for r in table if getattr(r[0], f"{axis}_window") // code in allowed]
        extra = calm_psnr(rows, names["error"], names["distance"])
        line = chosen(
            name, rows, anomalous, held.fakes, held.labels, windows["error"], names["error"], extra,
            windows["distance"], names["distance"],
        )  # fmt: skip
        print(line, flush=True)
    return table


def look_at_test(
    held: HeldOut,
    calibration: Calibration,
    footage: Path,
    out: Path,
    score: Callable[[list[Clip]], list[ClipScores]],
    windows: dict[str, Sequence[int]],
    named: Callable[[int], str] = str,
) -> None:
    """The one test look a probe's rule allows: labelled `footage` scored by `score` (clips -> their scores at
    `windows`, {"error": sides, "distance": sides}), the columns `calibration` chose kept, and what the service
    would send with it: `evaluate`'s streaming AUCs and alert report, printed and written to out/report.json
    (the paper's protocol does not depend on the windows). The choice is made before the footage is read."""
    found = labels_beside(footage)
    if found is None:
        raise SystemExit(f"no frame_labels_*.npy beside {footage}: the test look needs the footage's labels")
    ck = held.net.config
    clips = load_clips(footage, ck, held.clips[0].fps, progress=True)
    i = list(windows["error"]).index(calibration.error_window)
    j = list(windows["distance"]).index(calibration.distance_window)
    narrowed = [
        dataclasses.replace(s, region_psnr=s.region_psnr[:, [i]], region_distance=s.region_distance[:, [j]],
                            error_floor=s.error_floor[:, [i]])
        for s in score(clips)
    ]  # fmt: skip
    labels = aligned_labels(np.load(found), [len(c.frames) for c in clips], ck.window - 1)
    clip_labels = by_clip(labels, narrowed)
    results = report(narrowed, labels, calibration, FUSION_WEIGHT[ck.variant])
    alerts = event_report(narrowed, clip_labels, calibration, clips[0].fps)  # the service's on/off frame counts
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps({"calibration": calibration.to_dict(), "metrics": results, "events": alerts}, indent=1)
    )
    s = results["streaming"]
    print(
        f"test look ({named(calibration.error_window)}): streaming fused AUC {100 * s['fused']['auc']:.2f} % "
        f"(PSNR only {100 * s['psnr_only']['auc']:.2f}, distance only {100 * s['distance_only']['auc']:.2f}); "
        f"paper fused {100 * results['paper']['fused']['auc']:.2f} %"
    )
    print(event_lines(alerts))
