"""Frame-level AUC on labelled footage (paper, Sec. 4.1).

    evaluate weights/ped2.safetensors ../shared/datasets/ped2/testing --out runs/eval

Every clip is scored as a stream sees it (in order, its own memory copy with the test-time
update). Scores are normalized two ways: the paper's per-clip min-max (benchmark) and the
checkpoint's causal calibration (what the service sends). A prediction model has no score
for a clip's first T frames, so their labels are dropped (the paper's protocol). Writes
report.json (AUCs, EERs, speed, every per-frame score) and one PNG per clip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from sklearn.metrics import roc_auc_score, roc_curve

from model import checkpoint
from model.data import load_clips
from model.inference import INFERENCE_CHOICES, pick_device
from model.inference import build as build_inference
from model.scoring import FUSION_WEIGHT, UPDATE_THRESHOLD, ClipScores, minmax, paper_scores, score_clips


def aligned_labels(labels: np.ndarray, lengths: Sequence[int], skip: int) -> np.ndarray:
    """Concatenated per-frame labels -> the labels of scored frames: each clip loses its first `skip`."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size != sum(lengths):
        raise ValueError(f"{labels.size} labels for {sum(lengths)} frames")
    bounds = np.cumsum([0, *lengths])
    return np.concatenate([labels[a + skip : b] for a, b in pairwise(bounds)])


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate where false positives and false negatives are equally likely."""
    fpr, tpr, _ = roc_curve(labels, scores)
    gap = (1 - tpr) - fpr  # miss rate minus false-alarm rate: falls from 1 to -1 along the curve
    i = int(np.argmax(gap <= 0))
    t = gap[i - 1] / (gap[i - 1] - gap[i])  # where the segment from point i-1 to i crosses zero
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {"auc": float(roc_auc_score(labels, scores)), "eer": equal_error_rate(labels, scores)}


def report(scored: list[ClipScores], labels: np.ndarray, calibration, weight: float) -> dict:
    """AUC/EER of the fused score and of each term alone (the paper's ablation), both normalizations."""
    psnr = np.concatenate([s.psnr for s in scored])
    distance = np.concatenate([s.distance for s in scored])
    paper = {
        "fused": np.concatenate([paper_scores(s.psnr, s.distance, weight) for s in scored]),
        "psnr_only": np.concatenate([1 - minmax(s.psnr) for s in scored]),
        "distance_only": np.concatenate([minmax(s.distance) for s in scored]),
    }
    out = {"paper": {k: metrics(labels, v) for k, v in paper.items()}}
    if calibration is not None:
        streaming = {
            "fused": calibration.score(psnr, distance),
            "psnr_only": 1 - calibration.normalize_psnr(psnr),
            "distance_only": calibration.normalize_distance(distance),
        }
        out["streaming"] = {k: metrics(labels, v) for k, v in streaming.items()}
    return out


def plot_clip(path: Path, clip: ClipScores, labels: np.ndarray, calibration, weight: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.arange(clip.first_frame, clip.first_frame + len(clip.psnr))
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    anomalous = labels.astype(bool)
    ax.fill_between(
        frames, 0, 1, where=anomalous, color="tab:red", alpha=0.15, step="mid", label="ground truth anomaly"
    )
    ax.plot(frames, paper_scores(clip.psnr, clip.distance, weight), lw=1.2, label="score (per-clip min-max)")
    if calibration is not None:
        ax.plot(frames, calibration.score(clip.psnr, clip.distance), lw=1.2, label="score (streaming)")
        ax.axhline(calibration.alert_on, color="gray", ls="--", lw=0.8, label="alert threshold")
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
) -> None:
    """Score labelled test footage; print and write frame-level AUC and EER for both normalizations."""
    if inference not in INFERENCE_CHOICES:
        raise typer.BadParameter(f"--inference must be one of {', '.join(INFERENCE_CHOICES)}")
    ckpt = checkpoint.load(weights)
    config = ckpt.config
    try:
        dev = pick_device(device)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if labels is None:
        found = sorted(Path(data).parent.glob("frame_labels_*.npy"))
        if not found:
            raise typer.BadParameter(f"no frame_labels_*.npy beside {data}: pass --labels")
        labels = found[0]
    started = time.perf_counter()
    clips = load_clips(data, config, ckpt.fps, progress=True)
    loaded = time.perf_counter()
    model = build_inference(inference, ckpt.build(dev), dev)
    built = time.perf_counter()
    threshold = UPDATE_THRESHOLD[config.variant] if update_threshold is None else update_threshold
    scored = score_clips(model, clips, threshold, batch_size, dev, progress=True)
    finished = time.perf_counter()
    frame_labels = aligned_labels(np.load(labels), [len(c.frames) for c in clips], config.window - 1)
    weight = FUSION_WEIGHT[config.variant]
    results = report(scored, frame_labels, ckpt.calibration, weight)
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
    per_clip, offset = [], 0
    for s in scored:
        clip_labels = frame_labels[offset : offset + len(s.psnr)]
        offset += len(s.psnr)
        entry = {
            "name": s.name,
            "first_frame": s.first_frame,
            "psnr": s.psnr.tolist(),
            "distance": s.distance.tolist(),
            "paper_score": paper_scores(s.psnr, s.distance, weight).tolist(),
            "labels": clip_labels.tolist(),
        }
        if ckpt.calibration is not None:
            entry["streaming_score"] = ckpt.calibration.score(s.psnr, s.distance).tolist()
        per_clip.append(entry)
        if plots:
            plot_clip(out / f"clip_{s.name}.png", s, clip_labels, ckpt.calibration, weight)
    summary = {
        "weights": str(weights),
        "data": str(data),
        "labels": str(labels),
        "config": config.to_dict(),
        "fusion_weight": weight,
        "update_threshold": threshold,
        "metrics": results,
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
    print(
        f"{frames} frames scored at {speed['score_fps']} frames/s ({speed['total_fps']} frames/s with decoding), "
        f"inference path {model.name}"
    )


def cli() -> None:
    typer.run(main)


if __name__ == "__main__":
    cli()
