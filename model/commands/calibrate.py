"""Refit a checkpoint's streaming calibration on a camera's own normal footage.

    calibrate weights/ped2.safetensors ../my-camera/normal --fps 10 --out weights/my-camera.safetensors

A checkpoint's `Calibration` is fitted on the training camera's held-out clips. A camera whose
normal footage differs a little (exposure, compression, a few dB of PSNR) then scores every
normal frame near 1 and alerts all the time. This scores footage the operator states is normal,
as a stream would see it (`score_clips`: in order, one memory copy per clip), fits
`Calibration.fit` on it and writes a copy of the checkpoint with that calibration; weights,
memory, config and frame rate are unchanged, and the provenance gains a `recalibration` entry
naming the footage. Footage faster than the checkpoint's frame rate is subsampled to it first.
The service does the same live, per stream (`POST /api/streams/{id}/calibration`).

It also checks the model on this camera without labels (model/validation.py): synthetic anomalies
made from the same footage give a validation AUC and an event recall with the new thresholds.
`--select` goes further and chooses the region windows and λ on this footage too. `--mask` leaves out the
parts of the picture the camera's stream will mask (the same polygons as the service's `PUT
/api/streams/{id}/mask`): give that stream the same mask.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from model import checkpoint, masks, synthetic, validation
from model.calibration import FUSION_WEIGHT, MIN_FRAMES, Calibration, Drift
from model.commands import Draws, Kinds, Mask, RelativeError
from model.data import DataError, load_clips, resample
from model.device import pick_device
from model.inference import INFERENCE_CHOICES
from model.inference import build as build_inference
from model.regions import Regions
from model.scoring import UPDATE_THRESHOLD, score_clips


def main(
    weights: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) to recalibrate")],
    footage: Annotated[
        list[Path], typer.Argument(help="Normal footage: folders of frame folders (Ped2 layout) or video files")
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (a copy with the new calibration)")],
    fps: Annotated[
        float | None,
        typer.Option(
            help="Frame rate of frame folders (default: the checkpoint's; videos carry their own). "
            "Faster footage is subsampled to the checkpoint's rate, as a live stream is"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Clips scored in lockstep per batch")] = 16,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    inference: Annotated[
        str, typer.Option(help=f"Forward backend: {' | '.join(INFERENCE_CHOICES)} (model/inference.py)")
    ] = "auto",
    select: Annotated[
        bool, typer.Option(help="Choose the region windows and λ on this footage's synthetic anomalies too")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic anomalies")] = 0,
    draws: Draws = 1,
    kinds: Kinds = "all",
    relative_error: RelativeError = False,
    mask: Mask = None,
) -> Calibration:
    """Score normal footage with a checkpoint and write a copy calibrated on it."""
    if not footage:
        raise typer.BadParameter("give at least one footage folder or video")
    if inference not in INFERENCE_CHOICES:
        raise typer.BadParameter(f"--inference must be one of {', '.join(INFERENCE_CHOICES)}")
    try:
        validation_kinds = synthetic.parse_kinds(kinds)
        polygons = masks.parse(mask) if mask is not None else []
        ckpt = checkpoint.load(weights)
        dev = pick_device(device)
        loaded = [c for f in footage for c in load_clips(f, ckpt.config, fps or ckpt.fps, progress=sys.stderr.isatty())]
    except (checkpoint.CheckpointError, DataError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None
    config = ckpt.config
    clips = [resample(c, ckpt.fps) for c in loaded]
    model = build_inference(inference, ckpt.build(dev), dev)
    previous = ckpt.calibration
    where = previous.regions if previous is not None else Regions()
    threshold = UPDATE_THRESHOLD[config.variant]
    progress = sys.stderr.isatty()
    watched = torch.from_numpy(masks.watched_map(polygons, config.height, config.width)) if polygons else None
    scored = score_clips(
        model, clips, threshold, batch_size, dev, progress, (where.error_window,), (where.distance_window,), watched
    )
    measures = [s.measures(0, 0, where.distance_relative, where.error_relative) for s in scored]
    psnr, distance = np.concatenate([p for p, _ in measures]), np.concatenate([d for _, d in measures])
    if len(psnr) < MIN_FRAMES:
        raise typer.BadParameter(
            f"only {len(psnr)} scored frames (clips shorter than {config.window} frames give none); "
            f"calibration needs at least {MIN_FRAMES}"
        )
    weight = previous.weight if previous is not None else FUSION_WEIGHT[config.variant]
    drift = previous.drift if previous is not None else Drift()
    calibration = Calibration.fit(psnr, distance, weight, where, drift, [len(s.psnr) for s in scored])
    check = None
    if validation.usable(clips, config.window):
        fixed = None if select else calibration
        check = validation.validate(
            model, clips, threshold, ckpt.fps, dev, seed, fixed, kinds=validation_kinds, draws=draws, progress=progress,
            relative_error=relative_error, watched=watched,
        )  # fmt: skip
        calibration = check.calibration
        print(f"check on this footage's synthetic anomalies: {check.summary()}")
        print(check.terms_summary())
        print(check.levels_summary())
    else:
        print(f"no check: synthetic anomalies need clips of {synthetic.min_frames(config.window)} frames or more")
    provenance = {
        **ckpt.provenance,
        "recalibration": {
            "footage": [str(f) for f in footage],
            "clips": [c.name for c in clips],
            "frames": len(psnr),
            "mask": polygons,
            "validation": check.to_dict() if check is not None else None,
            "previous": ckpt.calibration.to_dict() if ckpt.calibration is not None else None,
            "inference": model.name,
            "device": str(dev),
            "commit": checkpoint.project_commit(),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    checkpoint.save(out, ckpt.build("cpu"), ckpt.fps, calibration, provenance)  # the stored weights, not the backend's
    old = ckpt.calibration
    before = f"PSNR {old.psnr_mean:.2f}±{old.psnr_std:.2f} dB, " if old is not None else "no calibration, "
    busier = calibration.frames - len(psnr)  # validation fits the thresholds on busier days of the footage too
    share = f"; give its stream the same mask ({masks.watched_fraction(polygons):.0%} watched)" if polygons else ""
    print(
        f"calibrated on {len(psnr)} frames of {len(clips)} clips"
        f"{f' and {busier} frames of their busier days' if busier > 0 else ''}: {before}now PSNR "
        f"{calibration.psnr_mean:.2f}±{calibration.psnr_std:.2f} dB; alert on/off "
        f"{calibration.alert_on:.3f}/{calibration.alert_off:.3f}; wrote {out}{share}"
    )
    return calibration


def cli() -> None:
    typer.run(main)


if __name__ == "__main__":
    cli()
