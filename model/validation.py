"""Validation without test labels: synthetic anomalies on held-out normal clips pick every setting.

`train` holds out normal clips; `model.synthetic` turns copies of them into clips with one labelled
event each. Scored as a stream sees them, they give a validation AUC and an event recall, so the
epoch to ship, the region window sides, the fusion weight λ and the alert thresholds are all
chosen here, never on a test split. `calibrate` runs the same check on a user's own footage.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import product

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from model import events, memory, synthetic
from model.alerts import AlertPolicy
from model.calibration import AlertLevel, Calibration, Drift, previous_medians
from model.data import Clip, window_tensors
from model.inference import InferencePath
from model.network import MemoryAE
from model.regions import Regions
from model.scoring import ClipScores, score_clips

# Candidate window sides: 0 is the whole frame (the paper's measures).
ERROR_WINDOWS: tuple[int, ...] = (0, 8, 12, 16, 24, 32)  # model pixels
DISTANCE_WINDOWS: tuple[int, ...] = (0, 1, 2, 4)  # query positions
WEIGHTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))  # λ; 1.0 is PSNR alone, 0.0 distance alone
# How far the normalizer may follow a stream (model.calibration.Drift): none, or the median of the last 30
# frames (3 s at 10 fps) or 100 (10 s), held within 0.5-2 held-out spreads of the held-out mean
DRIFTS: tuple[Drift, ...] = (Drift(), *(Drift(n, cap) for n in (30, 100) for cap in (0.5, 1.0, 2.0)))

# The operating points validation reports beside the service's default (AlertLevel()): calmer and more
# sensitive thresholds, each with what it would catch and raise for nothing on the same streams
ALERT_LEVELS: tuple[AlertLevel, ...] = (
    AlertLevel(0.995, 0.97),
    AlertLevel(),
    AlertLevel(0.98, 0.94),
    AlertLevel(0.97, 0.93),
    AlertLevel(0.95, 0.90),
)


@dataclass
class Choice:
    """A scoring setting and how it did on the synthetic events."""

    error_window: int
    distance_window: int
    weight: float
    auc: float
    distance_relative: bool = False
    drift: Drift = field(default_factory=Drift)
    benign_above_on: float = 0.0  # share of benign frames at or above the alert threshold, worst benign kind
    above: dict[str, float] = field(default_factory=dict)  # that share per benign kind
    error_relative: bool = False

    @property
    def regions(self) -> Regions:
        return Regions(self.error_window, self.distance_window, self.distance_relative, self.error_relative)


@dataclass
class OperatingPoint:
    """Alert thresholds at one level of the normal scores, and what the alert machine makes of the
    validation streams with them."""

    level: AlertLevel
    alert_on: float
    alert_off: float
    detected: int
    events: int
    median_delay_s: float | None
    false_episodes: int
    normal_above_on: float  # share of the streams' normal frames (benign streams, events' lead) at or above on

    def text(self) -> str:
        delay = "-" if self.median_delay_s is None else f"{self.median_delay_s:.2f} s"
        return (
            f"{100 * self.level.on:g}/{100 * self.level.off:g} (on {self.alert_on:.3f}): {self.detected}/{self.events}"
            f" events, median delay {delay}, {self.false_episodes} false episodes, {100 * self.normal_above_on:.1f} %"
        )


def operating_points(
    calibration: Calibration,
    normal_scores: np.ndarray,
    labels: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    fps: float,
    levels: Sequence[AlertLevel] = ALERT_LEVELS,
) -> list[OperatingPoint]:
    """`calibration`'s thresholds moved to each level of `normal_scores` (what its fit frames send), run
    over the validation streams (`labels`, `scores`, one per stream) by the service's alert machine."""
    out = []
    for level in levels:
        at = calibration.at_level(normal_scores, level)
        report = events.evaluate_events(labels, scores, AlertPolicy(at.alert_on, at.alert_off), fps).to_dict()
        out.append(
            OperatingPoint(
                level,
                at.alert_on,
                at.alert_off,
                report["detected"],
                report["events"],
                report["median_delay_s"],
                report["false_episodes"],
                report["normal_above_on_share"] or 0.0,
            )
        )
    return out


@dataclass
class ValidationReport:
    best: Choice
    calibration: Calibration  # fitted on the normal clips with the best setting
    psnr_only: Choice  # the best window for each term alone
    distance_only: Choice
    paper_measures: Choice | None  # whole-frame PSNR and mean distance at the paper's λ; None for a fixed setting
    events: dict  # event recall etc. of the best setting with the alert machine
    kinds: dict[str, float] = field(default_factory=dict)  # per anomaly kind: AUC; per benign kind: share above on
    frames: int = 0  # synthetic frames scored
    # per anomaly kind, each term alone at the chosen windows: which term sees which kind (blur, say, makes a
    # frame easier to predict, so PSNR cannot see it at all and only the distance can)
    terms: dict[str, dict[str, float]] = field(default_factory=dict)
    levels: list[OperatingPoint] = field(default_factory=list)  # the best setting at each of ALERT_LEVELS

    def levels_summary(self) -> str:
        return (
            "alert levels (on/off percentiles of the normal scores: events, delay, false episodes, normal frames "
            "above on): " + "; ".join(p.text() for p in self.levels)
        )

    def terms_summary(self) -> str:
        return "per kind, AUC of the fused score / PSNR alone / distance alone: " + "; ".join(
            f"{k} {100 * self.kinds[k]:.1f} / {100 * t['psnr']:.1f} / {100 * t['distance']:.1f}"
            for k, t in self.terms.items()
        )

    def summary(self) -> str:
        b, e = self.best, self.events
        return (
            f"validation AUC {100 * b.auc:.2f} % (error window {b.error_window}"
            f"{' relative' if b.error_relative else ''}, distance window "
            f"{b.distance_window}{' relative' if b.distance_relative else ''}, λ {b.weight}{drift_text(b.drift)}); "
            f"PSNR alone {100 * self.psnr_only.auc:.2f}, distance alone "
            f"{100 * self.distance_only.auc:.2f}"
            + (f", paper's measures {100 * self.paper_measures.auc:.2f}" if self.paper_measures else "")
            + f"; events "
            f"{e['detected']}/{e['events']}, false episodes {e['false_episodes']}; benign frames above alert_on: "
            + ", ".join(f"{k.removesuffix('_above_on')} {100 * v:.1f} %" for k, v in self.kinds.items() if "above" in k)
        )

    def to_dict(self) -> dict:
        return {
            "best": asdict(self.best),
            "psnr_only": asdict(self.psnr_only),
            "distance_only": asdict(self.distance_only),
            "paper_measures": asdict(self.paper_measures) if self.paper_measures else None,
            "events": self.events,
            "kinds": self.kinds,
            "frames": self.frames,
            "terms": self.terms,
            "levels": [asdict(p) for p in self.levels],
        }


def drift_text(drift: Drift) -> str:
    return f", drift {drift.frames} frames ≤{drift.cap:g} spreads" if drift.frames else ""


def usable(clips: Sequence[Clip], window: int) -> bool:
    """Whether these normal clips are long enough to make synthetic events from."""
    return any(len(c.frames) >= synthetic.min_frames(window) for c in clips)


@dataclass
class _Streams:
    """Streams' measures (P, D) of one setting, concatenated, and each frame's previous medians for one drift."""

    psnr: np.ndarray
    distance: np.ndarray
    lengths: list[int]
    medians: tuple[np.ndarray, np.ndarray] | None  # None: no drift

    @classmethod
    def of(
        cls,
        parts: Sequence[tuple[np.ndarray, np.ndarray]],
        drift: Drift,
        memo: dict[Hashable, np.ndarray] | None = None,
        keys: tuple[Hashable, Hashable] | None = None,
    ) -> _Streams:
        """`memo`, `keys`: where to keep each measure's medians (one key per measure column), so a grid that
        pairs one PSNR column with every distance column computes its medians once, not once per pair."""
        lengths = [len(p) for p, _ in parts]
        psnr, distance = np.concatenate([p for p, _ in parts]), np.concatenate([d for _, d in parts])
        medians = None
        if drift.frames:
            memo = {} if memo is None else memo
            keys = keys or ("psnr", "distance")
            for values, key in zip((psnr, distance), keys):
                if (key, drift) not in memo:
                    memo[key, drift] = previous_medians(values, drift.frames, lengths)
            medians = memo[keys[0], drift], memo[keys[1], drift]
        return cls(psnr, distance, lengths, medians)

    def join(self, other: _Streams) -> _Streams:
        medians = None
        if self.medians is not None and other.medians is not None:
            (a, b), (c, d) = self.medians, other.medians
            medians = np.concatenate([a, c]), np.concatenate([b, d])
        return _Streams(
            np.concatenate([self.psnr, other.psnr]),
            np.concatenate([self.distance, other.distance]),
            self.lengths + other.lengths,
            medians,
        )

    def take(self, streams: Sequence[int]) -> _Streams:
        bounds = np.cumsum([0, *self.lengths])
        rows = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in streams]) if streams else np.arange(0)
        medians = None if self.medians is None else (self.medians[0][rows], self.medians[1][rows])
        return _Streams(self.psnr[rows], self.distance[rows], [self.lengths[k] for k in streams], medians)

    def fit(self, weight: float, where: Regions, drift: Drift) -> Calibration:
        return Calibration.fit(self.psnr, self.distance, weight, where, drift, self.lengths, self.medians)

    def scores(self, calibration: Calibration) -> np.ndarray:
        """What the streams would send under `calibration` (fitted with this drift)."""
        baselines = None if self.medians is None else calibration.anchor(*self.medians)
        return np.asarray(calibration.score(self.psnr, self.distance, baselines))


def _fit_frames(quiet: _Streams, test: _Streams, busy: Sequence[int], without: int | None = None) -> _Streams:
    """The frames a calibration's thresholds are fitted on: the normal clips and their busier days (`busy`,
    indices into `test`), less `without` (a busier day's own calm check)."""
    return quiet.join(test.take([k for k in busy if k != without]))


def score_candidates(
    model: MemoryAE | InferencePath,
    clips: Sequence[Clip],
    update_threshold: float,
    device: torch.device | str = "cpu",
    error_windows: Sequence[int] = ERROR_WINDOWS,
    distance_windows: Sequence[int] = DISTANCE_WINDOWS,
    progress: bool = False,
    watched: torch.Tensor | None = None,
) -> list[ClipScores]:
    return score_clips(
        model,
        clips,
        update_threshold,
        16,
        device,
        progress,
        error_windows=error_windows,
        distance_windows=distance_windows,
        watched=watched,
    )


def choose(
    normal: Sequence[ClipScores],
    anomalous: Sequence[ClipScores],
    labels: Sequence[np.ndarray],
    error_windows: Sequence[int] = ERROR_WINDOWS,
    distance_windows: Sequence[int] = DISTANCE_WINDOWS,
    weights: Sequence[float] = WEIGHTS,
    benign: Sequence[str | None] | None = None,
    relative: Sequence[bool] = (False, True),
    busy: Sequence[bool] | None = None,
    drifts: Sequence[Drift] = (Drift(),),
    error_relative: Sequence[bool] = (False,),
) -> list[tuple[Choice, Calibration]]:
    """Every (error window, distance window, drift, λ): its calibration on `normal`, AUC on `anomalous`,
    and the share of benign frames (normal variation) that would raise the alert, for the worst benign kind.
    `relative`, `error_relative`: D and P absolute and/or relative to the frame's median (P only for a windowed
    error: the whole frame is its own median; relative P only when asked, RELATIVE_ERROR_HELP).

    `benign`: per anomalous clip, its benign kind (all its frames normal), or None for a clip with an event.
    The worst kind counts, not the mean: a camera that alarms whenever its bitrate drops is unusable even
    if it is calm under every other change.
    `busy`: per anomalous clip, whether it is a busier day of the scene (normal content, not a camera
    change): its frames join `normal` in the fit, because the thresholds must hold on busy days as on
    quiet ones. Its own share above is then cross-fitted (thresholds fitted without that clip), so the
    calm check still sees a busy day the fit did not.
    Every clip is a stream of its own: with drift, each frame is compared with its own clip's past."""
    y = np.concatenate(labels)
    kinds = list(benign or [None] * len(labels))
    in_fit = [k for k, b in enumerate(busy or [False] * len(labels)) if b]
    bounds = np.cumsum([0, *map(len, labels)])
    members = {kind: [k for k, x in enumerate(kinds) if x == kind] for kind in dict.fromkeys(filter(None, kinds))}
    out = []
    memo: tuple[dict, dict] = {}, {}  # previous medians of the anomalous and the normal streams per column and drift
    grid = product(enumerate(error_windows), error_relative, enumerate(distance_windows), relative, drifts)
    for (i, e), erel, (j, d), rel, drift in grid:
        if erel and not e:
            continue
        keys = ("psnr", i, erel), ("distance", j, rel)
        test = _Streams.of([s.measures(i, j, rel, erel) for s in anomalous], drift, memo[0], keys)
        quiet = _Streams.of([s.measures(i, j, rel, erel) for s in normal], drift, memo[1], keys)
        where = Regions(e, d, rel, erel)
        fitted_on = {k: _fit_frames(quiet, test, in_fit, without=k) for k in [None, *in_fit]}

        def fit(w: float, without: int | None = None) -> Calibration:
            return fitted_on[without].fit(w, where, drift)  # noqa: B023

        for w in weights:
            calibration = fit(w)
            score = test.scores(calibration)
            above = {}
            for kind, clips in members.items():
                hits = 0
                for k in clips:
                    if k in in_fit:  # a busier day: thresholds fitted without it
                        held_out = fit(w, without=k)
                        hits += int(np.sum(test.take([k]).scores(held_out) >= held_out.alert_on))
                    else:
                        hits += int(np.sum(score[bounds[k] : bounds[k + 1]] >= calibration.alert_on))
                above[kind] = hits / sum(len(labels[k]) for k in clips)
            auc = float(roc_auc_score(y, score))
            worst = max(above.values(), default=0.0)
            out.append((Choice(e, d, w, auc, rel, drift, worst, above, erel), calibration))
    return out


RELATIVE_ERROR_HELP = (  # the --relative-error option of train and calibrate
    "Also weigh P relative to the frame's median error window (model.regions). Off by default: validation's "
    "camera-wide benign kinds reward it by construction, and on Ped2's test camera it cost 8-9 points of AUC "
    "(docs/experiments.md, 'The error relative to the frame's median window')"
)
MAX_BENIGN_ALARMS = 0.05  # the operator's bar: at most 5 % of normal frames above the alert threshold


def pick(table: Sequence[tuple[Choice, Calibration]]) -> tuple[Choice, Calibration]:
    """The best AUC among settings that alarm on at most 5 % of each benign kind's frames; else the calmest.

    AUC alone rewards a term that separates the synthetic events but jumps on any change of the normal
    footage (the memory distance of a collapsed memory does: its normal values sit near 1e-6)."""
    calm = [r for r in table if r[0].benign_above_on <= MAX_BENIGN_ALARMS]
    if calm:
        return max(calm, key=lambda r: r[0].auc)
    return min(table, key=lambda r: (r[0].benign_above_on, -r[0].auc))


def validate(
    model: MemoryAE | InferencePath,
    normal_clips: Sequence[Clip],
    update_threshold: float,
    fps: float,
    device: torch.device | str = "cpu",
    seed: int = 0,
    fixed: Calibration | None = None,
    paper_weight: float = 0.6,
    kinds: Sequence[str] = synthetic.KINDS,
    draws: int = 1,
    progress: bool = False,
    relative_error: bool = False,
    watched: torch.Tensor | None = None,
) -> ValidationReport:
    """Score the normal clips and their synthetic anomalies; choose the setting with the best AUC.

    `fixed`: keep this calibration's windows and λ (a user's check of a shipped setting); the
    thresholds are still refitted on `normal_clips`.
    `kinds`: the anomaly kinds that matter on this camera (the operator's call: PSNR cannot see blur, the
    memory distance hardly sees wrong speed, so the kinds decide how the terms are weighed). The events of
    the kinds kept are the very ones all kinds would give.
    `progress`: a bar for the scoring of the synthetic streams, most of the time (minutes with several draws).
    `draws`: pool that many draws of synthetic events (seeds `seed`, `seed + 1`, ...). On Ped2's two held-out
    clips one draw (40 events) moves a checkpoint's AUC by 1-2.5 points from seed to seed; three give 120.
    `relative_error`: weigh P relative to the frame's median error window beside the absolute (RELATIVE_ERROR_HELP).
    `watched` (H, W): the camera's mask (model.masks), for every stream; synthetic events are drawn anywhere, and
    their frames whose change lies mostly in the masked part are labelled normal (synthetic.in_view).
    """
    window = model.config.window
    mask = None if watched is None else watched.cpu().numpy()
    fakes = streams(normal_clips, window, range(seed, seed + draws), kinds, mask)
    error_windows = (fixed.error_window,) if fixed else ERROR_WINDOWS
    distance_windows = (fixed.distance_window,) if fixed else DISTANCE_WINDOWS
    normal = score_candidates(
        model, normal_clips, update_threshold, device, error_windows, distance_windows, watched=watched
    )
    anomalous = score_candidates(
        model, [f.as_clip() for f in fakes], update_threshold, device, error_windows, distance_windows, progress,
        watched,
    )  # fmt: skip
    labels, benign, busy = roles(fakes, window)
    weights = (fixed.weight,) if fixed else WEIGHTS
    relative = (fixed.distance_relative,) if fixed else (False, True)
    error_relative = (fixed.error_relative,) if fixed else (False, True) if relative_error else (False,)
    drifts = (fixed.drift,) if fixed else DRIFTS
    grid = dict(benign=benign, relative=relative, busy=busy, drifts=drifts, error_relative=error_relative)
    table = choose(normal, anomalous, labels, error_windows, distance_windows, weights, **grid)
    best, calibration = pick(table)
    alone = table  # a fixed λ: each term alone still reported, at the fixed windows
    if fixed:
        alone = choose(normal, anomalous, labels, error_windows, distance_windows, (0.0, 1.0), **grid)
    psnr_only = max((c for c, _ in alone if c.weight == 1.0), key=lambda c: c.auc, default=best)
    distance_only = max((c for c, _ in alone if c.weight == 0.0), key=lambda c: c.auc, default=best)
    paper = next(  # only scored when every setting is (a fixed setting scores its own windows alone)
        (
            c
            for c, _ in table
            if c.error_window == 0
            and c.distance_window == 0
            and not c.distance_relative
            and not c.error_relative
            and not c.drift.frames
            and c.weight == paper_weight
        ),
        None,
    )
    columns = setting_columns(calibration, error_windows, distance_windows)
    measures = [calibration.measures(s, columns) for s in anomalous]
    scores = [calibration.stream_scores(p, d) for p, d in measures]
    policy = AlertPolicy(calibration.alert_on, calibration.alert_off)  # the service's default on/off frame counts
    report = events.evaluate_events(labels, scores, policy, fps).to_dict()
    quiet = _Streams.of([calibration.measures(s, columns) for s in normal], calibration.drift)
    fitted = _fit_frames(quiet, _Streams.of(measures, calibration.drift), [k for k, b in enumerate(busy) if b])
    levels = operating_points(calibration, fitted.scores(calibration), labels, scores, fps)
    kinds, terms = per_kind(fakes, labels, scores, measures)
    for kind, share in best.above.items():  # share of benign frames at or above alert_on (busier days cross-fitted)
        kinds[f"{kind}_above_on"] = share
    return ValidationReport(
        best, calibration, psnr_only, distance_only, paper, report, kinds, sum(len(x) for x in labels), terms, levels
    )


def streams(
    normal_clips: Sequence[Clip],
    window: int,
    seeds: Sequence[int],
    kinds: Sequence[str] = synthetic.KINDS,
    watched: np.ndarray | None = None,
) -> list[synthetic.SyntheticClip]:
    """The validation streams: synthetic events of `kinds` in the normal clips, then the clips' benign
    variations, labelled normal (a setting must not alarm on them), for each seed's draw. `watched`: the
    camera's mask (synthetic.make).

    The busier days are not drawn (another clip's walkers, the same for every seed): they come once, or
    the thresholds would be fitted on copies of the very busy day each calm check holds out."""
    long = [c for c in normal_clips if len(c.frames) >= synthetic.min_frames(window)]
    if not long:
        raise ValueError(f"normal clips too short for synthetic anomalies (need {synthetic.min_frames(window)} frames)")
    fakes: list[synthetic.SyntheticClip] = []
    variations: list[synthetic.SyntheticClip] = []
    for n, seed in enumerate(seeds):
        tag = f"@{seed}" if len(seeds) > 1 else ""  # stream names stay unique across draws
        drawn = synthetic.make(normal_clips, window, seed, watched=watched)
        fakes += [replace(f, name=f.name + tag) for f in drawn if f.kind in kinds]
        variations += [replace(f, name=f.name + tag) for f in synthetic.benign(long, seed, crowd_copies=n == 0)]
    if not fakes:
        raise ValueError(f"no synthetic events of the kinds {', '.join(kinds)} from these clips")
    return fakes + variations


def roles(
    fakes: Sequence[synthetic.SyntheticClip], window: int
) -> tuple[list[np.ndarray], list[str | None], list[bool]]:
    """What `choose` needs of each validation stream: its labels (scored frames only), its benign kind (None
    for an event's stream), and whether it is a busier day (its frames join the threshold fit)."""
    labels = [f.labels[window - 1 :] for f in fakes]
    benign = [f.kind if f.kind in synthetic.BENIGN else None for f in fakes]
    return labels, benign, [f.kind in synthetic.BUSY for f in fakes]


def per_kind(
    fakes: Sequence[synthetic.SyntheticClip],
    labels: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    measures: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """AUC of each kind's events against its own streams' normal frames: of the fused score, and of each
    term alone (PSNR: lower is more anomalous)."""
    kinds: dict[str, float] = {}
    terms: dict[str, dict[str, float]] = {}
    for kind in (*synthetic.KINDS, *synthetic.OPT_IN):
        members = [k for k, f in enumerate(fakes) if f.kind == kind]
        if not members:  # rush events need two held-out clips
            continue
        y = np.concatenate([labels[k] for k in members])
        if 0 < y.sum() < len(y):
            kinds[kind] = float(roc_auc_score(y, np.concatenate([scores[k] for k in members])))
            terms[kind] = {
                "psnr": float(roc_auc_score(y, -np.concatenate([measures[k][0] for k in members]))),
                "distance": float(roc_auc_score(y, np.concatenate([measures[k][1] for k in members]))),
            }
    return kinds, terms


def setting_columns(
    calibration: Calibration, error_windows: Sequence[int], distance_windows: Sequence[int]
) -> tuple[int, int]:
    """Which scored columns (error window, distance window) hold this calibration's measures."""
    return error_windows.index(calibration.error_window), distance_windows.index(calibration.distance_window)


@torch.no_grad()
def memory_use(
    model: MemoryAE, clips: Sequence[Clip], device: torch.device | str = "cpu", batch: int = 32
) -> memory.Use | None:
    """How the queries of held-out normal clips use the trained memory (memory.Use): `train` prints it with
    every validation, so a memory that collapsed onto a few items, or onto a map of the place, shows.
    None when no clip is a window long."""
    was_training, window = model.training, model.config.window
    model.eval()
    try:
        nearest = []
        for clip in clips:
            starts = range(len(clip.frames) - window + 1)
            for i in range(0, len(starts), batch):
                x, _ = window_tensors(
                    np.stack([clip.frames[t : t + window] for t in starts[i : i + batch]]), model.config, device
                )
                features, _ = model.encode(x)  # (B, C, h, w)
                queries = memory.flatten_queries(features.float())  # (B, N, C)
                nearest.append(memory.matching_scores(queries, model.items).argmax(dim=-1))  # (B, N)
        return memory.use(torch.cat(nearest), model.config.memory_size) if nearest else None
    finally:
        model.train(was_training)
