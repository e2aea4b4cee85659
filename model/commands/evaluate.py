"""Frame-level AUC on labelled footage (paper, Sec. 4.1).

    evaluate weights/ped2.safetensors ../shared/datasets/ped2/testing --out runs/eval

Every clip is scored as a stream sees it (in order, its own memory copy with the test-time
update). Scores are normalized two ways: the paper's per-clip min-max (benchmark) and the
checkpoint's causal calibration (what the service sends). A prediction model has no score
for a clip's first T frames, so their labels are dropped (the paper's protocol). Writes
report.json (AUCs, EERs, speed, every per-frame score) and one PNG per clip. `--mask` scores the
footage as a stream with that mask does (calibrate with the same mask first: the fit should see it too).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from model import checkpoint, events, masks
from model.alerts import AlertPolicy
from model.calibration import FUSION_WEIGHT, Calibration, paper_scores
from model.commands import Mask
from model.data import DataError, load_clips
from model.device import pick_device
from model.inference import INFERENCE_CHOICES
from model.inference import build as build_inference
from model.metrics import aligned_labels, by_clip, event_report, labels_beside, report
from model.regions import Regions
from model.scoring import UPDATE_THRESHOLD, ClipScores, score_clips


def plot_clip(
    path: Path, clip: ClipScores, labels: np.ndarray, calibration: Calibration | None, weight: float, policy=None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.arange(clip.first_frame, clip.first_frame + len(clip.psnr))
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    anomalous = labels.astype(bool)
    ax.fill_between(
        frames, 0, 1, where=anomalous, color="tab:red", alpha=0.15, step="mid", label="ground truth anomaly"
    )
    ax.plot(frames, paper_scores(clip.psnr, clip.distance, weight), lw=1.0, label="paper (per-clip min-max)")
    if calibration is not None:
        score = calibration.clip_scores(clip)
        ax.plot(frames, score, lw=1.2, label="streaming (what the service sends)")
        ax.axhline(calibration.alert_on, color="gray", ls="--", lw=0.8, label="alert on")
        for i, e in enumerate(events.episodes(score, policy) if policy is not None else []):
            ax.axvspan(
                frames[e.raised], frames[e.end], ymin=0.92, ymax=1, color="black", alpha=0.6,
                label="alert episode" if i == 0 else None,
            )  # fmt: skip
    ax.set(xlabel="frame", ylabel="anomaly score", ylim=(0, 1), title=f"clip {clip.name}")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(
    weights: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors)")],
    data: Annotated[Path, typer.Argument(help="Test footage: frame folders (Ped2 layout) or video files")],
    labels: Annotated[
        Path | None, typer.Option(help="Per-frame labels .npy, clips concatenated (default: ../frame_labels_*.npy)")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.json and per-clip plots")] = Path("runs/eval"),
    batch_size: Annotated[int, typer.Option(help="Clips scored in lockstep per batch")] = 16,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    plots: Annotated[bool, typer.Option(help="Write one PNG per clip")] = True,
    inference: Annotated[
        str, typer.Option(help=f"Forward backend: {' | '.join(INFERENCE_CHOICES)} (model/inference.py)")
    ] = "auto",
    update_threshold: Annotated[
        float | None,
        typer.Option(min=0, help="Test-time memory update below this weighted error (default: the paper's; 0: never)"),
    ] = None,
    on_frames: Annotated[
        int, typer.Option(min=1, help="Alert machine: frames above alert_on that open (service's)")
    ] = AlertPolicy.on_frames,
    off_frames: Annotated[
        int, typer.Option(min=1, help="Alert machine: frames below alert_off that close")
    ] = AlertPolicy.off_frames,
    mask: Mask = None,
) -> None:
    """Score labelled test footage; print and write frame-level AUC and EER for both normalizations."""
    if inference not in INFERENCE_CHOICES:
        raise typer.BadParameter(f"--inference must be one of {', '.join(INFERENCE_CHOICES)}")
    try:
        polygons = masks.parse(mask) if mask is not None else []
        ckpt = checkpoint.load(weights)
        dev = pick_device(device)
    except ValueError as e:  # CheckpointError too: not a checkpoint, or a corrupt one; a bad mask
        raise typer.BadParameter(str(e)) from None
    config = ckpt.config
    if labels is None:
        labels = labels_beside(Path(data))
        if labels is None:
            raise typer.BadParameter(f"no frame_labels_*.npy beside {data}: pass --labels")
    started = time.perf_counter()
    try:
        clips = load_clips(data, config, ckpt.fps, progress=True)
    except DataError as e:
        raise typer.BadParameter(str(e)) from None
    loaded = time.perf_counter()
    model = build_inference(inference, ckpt.build(dev), dev)
    built = time.perf_counter()
    threshold = UPDATE_THRESHOLD[config.variant] if update_threshold is None else update_threshold
    where = ckpt.calibration.regions if ckpt.calibration is not None else Regions()
    watched = torch.from_numpy(masks.watched_map(polygons, config.height, config.width)) if polygons else None
    scored = score_clips(
        model, clips, threshold, batch_size, dev, True, (where.error_window,), (where.distance_window,), watched
    )
    finished = time.perf_counter()
    frame_labels = aligned_labels(np.load(labels), [len(c.frames) for c in clips], config.window - 1)
    weight = FUSION_WEIGHT[config.variant]
    results = report(scored, frame_labels, ckpt.calibration, weight)
    clip_labels = by_clip(frame_labels, scored)
    alerts = None
    if ckpt.calibration is not None:
        alerts = event_report(scored, clip_labels, ckpt.calibration, ckpt.fps, on_frames, off_frames)
    policy = (
        AlertPolicy(ckpt.calibration.alert_on, ckpt.calibration.alert_off, on_frames, off_frames) if alerts else None
    )
    frames = sum(len(s.psnr) for s in scored)
    speed = {
        "frames": frames,
        "decode_s": round(loaded - started, 2),
        "build_s": round(built - loaded, 2),
        "score_s": round(finished - built, 2),
        "score_fps": round(frames / (finished - built), 1),
        "total_fps": round(frames / (finished - started), 1),
        "device": str(dev),
        "inference": model.describe(),
    }
    out.mkdir(parents=True, exist_ok=True)
    per_clip = []
    for s, y in zip(scored, clip_labels):
        entry = {
            "name": s.name,
            "first_frame": s.first_frame,
            "psnr": s.psnr.tolist(),
            "distance": s.distance.tolist(),
            "paper_score": paper_scores(s.psnr, s.distance, weight).tolist(),
            "region_psnr": s.region_psnr[:, 0].tolist(),
            "region_distance": s.region_distance[:, 0].tolist(),
            "distance_floor": s.distance_floor.tolist(),
            "error_floor": s.error_floor[:, 0].tolist(),
            "labels": y.astype(int).tolist(),
        }
        if ckpt.calibration is not None:
            entry["streaming_score"] = ckpt.calibration.clip_scores(s).tolist()
        per_clip.append(entry)
        if plots:
            plot_clip(out / f"clip_{s.name}.png", s, y, ckpt.calibration, weight, policy)
    summary = {
        "weights": str(weights),
        "data": str(data),
        "labels": str(labels),
        "config": config.to_dict(),
        "fusion_weight": weight,
        "update_threshold": threshold,
        "mask": polygons,
        "calibration": ckpt.calibration.to_dict() if ckpt.calibration is not None else None,
        "metrics": results,
        "events": alerts,
        "speed": speed,
    }
    (out / "report.json").write_text(json.dumps({**summary, "clips": per_clip}))
    print(json.dumps(summary, indent=2))
    for mode, t in results.items():
        fused, psnr_only, distance_only = (100 * t[k]["auc"] for k in ("fused", "psnr_only", "distance_only"))
        print(
            f"{mode:>9}: fused AUC {fused:.2f} % (PSNR only {psnr_only:.2f}, distance only {distance_only:.2f}), "
            f"EER {100 * t['fused']['eer']:.2f} %"
        )
    if alerts is not None:
        print(event_lines(alerts))
    print(
        f"{frames} frames scored at {speed['score_fps']} frames/s ({speed['total_fps']} frames/s with decoding), "
        f"inference path {model.name}"
    )


def describe_events(e: dict) -> str:
    delay = (
        "n/a"
        if e["median_delay_frames"] is None
        else f"{e['median_delay_frames']:.0f} frames ({e['median_delay_s']:.2f} s)"
    )
    share = e["normal_above_on_share"]  # None where the clips scored hold no normal frame
    above = "no normal frames scored" if share is None else f"{100 * share:.1f} % of normal frames above alert_on"
    return (
        f"{e['detected']}/{e['events']} events alerted, median delay {delay}, {e['false_episodes']} false episodes, "
        f"{above}"
    )


def where_it_alarms(e: dict) -> str:
    """The clips whose normal frames score above alert_on, most first: where an operator would be woken."""
    counts = zip(e["clips"], e["clip_normal_above_on"], e["clip_normal_frames"], strict=True)
    ranked = sorted((c for c in counts if c[1]), key=lambda c: -c[1])
    return ", ".join(f"{name} {above} of {normal}" for name, above, normal in ranked)


def event_lines(alerts: dict) -> str:
    """`event_report`'s figures as printed: the checkpoint's calibration, then each refit fold."""
    lines = [f"   events: checkpoint's calibration: {describe_events(alerts['checkpoint'])}"]
    if alarming := where_it_alarms(alerts["checkpoint"]):
        lines.append(f"           normal frames above alert_on, by clip: {alarming}")
    for fold in alerts["refit"]:
        lines.append(f"           refit on {', '.join(fold['fitted_on'])}: {describe_events(fold['camera'])}")
    return "\n".join(lines)


def cli() -> None:
    typer.run(main)


if __name__ == "__main__":
    cli()
