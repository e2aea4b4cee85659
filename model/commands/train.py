"""Train on normal footage (paper, Sec. 3.3), then calibrate the streaming normalizer.

    train ../shared/datasets/ped2/training --fps 10 --out weights/ped2.safetensors

Loss = frame MSE + λc·compactness + λs·separateness; after every step each memory item
absorbs its nearest queries. Every few epochs the model is validated on synthetic anomalies made
from the held-out normal clips (model/validation.py); the epoch with the best validation AUC (a
setting calm on every benign kind first, and one the service's fast inference path accepts before
one it refuses) is the one written, with the scoring setting (region windows, λ) and alert thresholds chosen there.
Periodic training-state files make `--resume` continue where a run stopped, bit for bit with the
same seed.
"""

from __future__ import annotations

import copy
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
import typer
from tqdm import tqdm

from model import checkpoint, gradient, inference, memory, moving, pseudo, synthetic, validation
from model.calibration import FUSION_WEIGHT, Calibration
from model.commands import Draws, Kinds, RelativeError
from model.data import WindowDataset, empty_scene, load_clips, split_holdout
from model.device import bf16_supported, pick_device
from model.network import MemoryAE, ModelConfig
from model.scoring import UPDATE_THRESHOLD, score_clips
from model.validation import ValidationReport

# The paper's loss weights per variant: (λc compactness, λs separateness).
LOSS_WEIGHTS = {"prediction": (0.1, 0.1), "reconstruction": (0.01, 0.01)}


def validate(
    model: MemoryAE,
    holdout: list,
    rate: float,
    device: torch.device,
    seed: int,
    kinds: tuple[str, ...],
    draws: int,
    relative_error: bool = False,
) -> ValidationReport:
    model.eval()
    try:
        threshold = UPDATE_THRESHOLD[model.config.variant]
        return validation.validate(
            model, holdout, threshold, rate, device, seed, kinds=kinds, draws=draws, relative_error=relative_error
        )
    finally:
        model.train()


def fast_path_refusal(model: MemoryAE, device: torch.device) -> str | None:
    """Why the service's fast inference path would refuse these weights (it then serves them in fp32, at
    a third of the speed), or None. An early epoch's large activations can stray in bf16."""
    checked = inference.fast_path_difference(copy.deepcopy(model).eval(), device)
    if checked is None or checked[1] <= inference.VERIFY_TOLERANCE:
        return None
    name, diff = checked
    return f"the service's {name} path refuses it (output strays {diff:.3g} from fp32 > {inference.VERIFY_TOLERANCE})"


def rank(report: ValidationReport, refusal: str | None) -> float:
    """Which epoch ships: one the fast path accepts before one it refuses, then one whose setting stays
    calm on every benign kind, then the best validation AUC."""
    return report.best.auc - (report.best.benign_above_on > validation.MAX_BENIGN_ALARMS) - 2 * (refusal is not None)


def fallback_calibration(model: MemoryAE, holdout: list, device: torch.device) -> Calibration | None:
    """Whole-frame calibration when the held-out clips are too short for synthetic events."""
    if not holdout:
        return None
    model.eval()
    scored = score_clips(model, holdout, UPDATE_THRESHOLD[model.config.variant], device=device, progress=True)
    psnr = np.concatenate([s.psnr for s in scored])
    distance = np.concatenate([s.distance for s in scored])
    return Calibration.fit(psnr, distance, FUSION_WEIGHT[model.config.variant])


def main(
    data: Annotated[Path, typer.Argument(help="Folder of frame folders (Ped2 layout) or of video files, or one video")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write")] = Path("weights/model.safetensors"),
    fps: Annotated[float | None, typer.Option(help="Frame rate of frame folders (videos carry their own)")] = None,
    variant: Literal["prediction", "reconstruction"] = "prediction",
    base_width: Annotated[int, typer.Option(help="Channels of the first stage (paper: 64)")] = 16,
    height: Annotated[int, typer.Option(help="Input height, multiple of 8 (paper: 256)")] = 128,
    width: Annotated[int, typer.Option(help="Input width, multiple of 8 (paper: 256)")] = 192,
    channels: Annotated[int, typer.Option(help="1 (grey) or 3 (colour)")] = 1,
    memory_size: Annotated[int, typer.Option(help="Memory items M (paper: 10)")] = 10,
    past_frames: Annotated[int, typer.Option(help="Past frames T (paper: 4)")] = 4,
    frame_step: Annotated[
        int,
        typer.Option(
            min=1,
            help="Frames between the past frames and to the target (paper: 1): 2 predicts t from t-8, t-6, t-4, "
            "t-2, so wrong speed moves twice as far per input (not in the paper)",
        ),
    ] = 1,
    skips: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=3,
            help="Encoder stages whose features skip to the decoder, shallowest first (default: the paper's, 3 for "
            "prediction, 0 for reconstruction); fewer make the decoder depend on the memory read",
        ),
    ] = None,
    background: Annotated[
        bool,
        typer.Option(
            help="Subtract the camera's empty scene (the median training frame) from the input and predict the "
            "change from it, so the memory sees what is in the scene, not the place (not in the paper)",
        ),
    ] = False,
    epochs: int = 40,
    batch_size: int = 4,
    lr: float = 2e-4,
    lambda_c: Annotated[float | None, typer.Option(help="Compactness weight (default: paper's)")] = None,
    lambda_s: Annotated[float | None, typer.Option(help="Separateness weight (default: paper's)")] = None,
    holdout: Annotated[float, typer.Option(help="Fraction of clips kept out to calibrate scores")] = 0.125,
    precision: Annotated[Literal["auto", "fp32", "bf16"], typer.Option(help="bf16 autocast where supported")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: int = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Epochs between training-state saves")] = 1,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.state.pt")] = False,
    validate_every: Annotated[
        int, typer.Option(min=0, help="Epochs between validations on synthetic anomalies (0: last epoch only)")
    ] = 4,
    augment: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of training windows given a random benign camera change (0: none)"),
    ] = 0.0,
    augment_kinds: Annotated[str, typer.Option(help=synthetic.CHANGES_HELP)] = "all",
    crowd: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of training windows given another clip's walkers too: a busier day (0: none)"
        ),
    ] = 0.0,
    reverse: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of training windows played backwards: a walker crossing the other way at the"
            " same speed (0: none; not in the paper; on Ped2, 0.5 predicted normal frames better and ranked events"
            " worse, docs/experiments.md)",
        ),
    ] = 0.0,
    kinds: Kinds = "all",
    validation_seed: Annotated[
        int,
        typer.Option(
            help="Seed of the synthetic anomalies; its own, not the training seed, so runs of several training "
            "seeds are validated on the same events"
        ),
    ] = 0,
    draws: Draws = 1,
    revive: Annotated[
        int,
        typer.Option(
            min=0,
            help="Steps an item may go unmatched before it is moved onto the worst-described query (0: never, "
            "as in the paper)",
        ),
    ] = 0,
    snapshot_every: Annotated[
        int, typer.Option(min=0, help="Epochs between weight snapshots OUT.epNN.safetensors (0: none)")
    ] = 0,
    lambda_speed: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the speed loss (model/pseudo.py): queries of windows played 2-4x too fast must stray "
            "from the items more than normal ones (0: off, as in the paper)",
        ),
    ] = 0.0,
    lambda_slow: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of a prediction loss on the same too-fast windows toward the frame that follows their "
            "last input at normal speed: the predictor learns that things move at walking speed (0: off)",
        ),
    ] = 0.0,
    lambda_gd: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the gradient loss (model/gradient.py, Liu et al. 2018): the predicted frame's edges must "
            "match the target's, so predictions stay sharp (0: off, as in MNAD)",
        ),
    ] = 0.0,
    motion_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Extra weight A in the frame loss of the pixels that changed since the last input frame "
            "(model/moving.py): w = 1 + A * min(change / 20 grey levels, 1); 0: plain MSE, as in MNAD",
        ),
    ] = 0.0,
    relative_error: RelativeError = False,
) -> None:
    """Train the memory-guided normality model on normal footage and write a checkpoint."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        dev = pick_device(device)
        validation_kinds = synthetic.parse_kinds(kinds)
        changes = synthetic.parse_changes(augment_kinds)
        config = ModelConfig(
            variant, base_width, height, width, channels, memory_size, past_frames, skips, background, frame_step
        )
        clips = load_clips(data, config, fps, progress=True)
    except ValueError as e:  # DataError too: a file that is no video, a folder without frames
        raise typer.BadParameter(str(e)) from None
    rate = fps or next((c.fps for c in clips if c.fps), None)
    if rate is None:
        raise typer.BadParameter("frame folders carry no frame rate: pass --fps")
    train_clips, holdout_clips = split_holdout(clips, holdout)
    can_validate = validation.usable(holdout_clips, config.window)
    if not can_validate:
        print("validation: the held-out clips are too short for synthetic anomalies; shipping the last epoch")
    dataset = WindowDataset(train_clips, config, augment, seed, crowd, changes, reverse)
    if len(dataset) < batch_size:
        raise typer.BadParameter(f"{data}: only {len(dataset)} training windows, fewer than one batch")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed)
    )
    pseudo_loader = None
    if (lambda_speed or lambda_slow) and variant == "prediction":  # half a batch of skipped windows beside each
        skipped = pseudo.SkippedWindows(train_clips, config, augment, seed + 1, changes)
        if len(skipped) == 0:
            raise typer.BadParameter(f"{data}: clips too short for windows of skipped frames")
        pseudo_batch = max(1, batch_size // 2)
        sampler = torch.utils.data.RandomSampler(
            skipped, True, len(loader) * pseudo_batch, generator=torch.Generator().manual_seed(seed + 1)
        )
        pseudo_loader = torch.utils.data.DataLoader(skipped, pseudo_batch, sampler=sampler, drop_last=True)
    elif lambda_speed or lambda_slow:
        raise typer.BadParameter(
            "--lambda-speed/--lambda-slow: the reconstruction variant sees one frame, it has no speed"
        )
    if motion_weight and variant != "prediction":
        raise typer.BadParameter("--motion-weight: the reconstruction variant sees one frame, nothing moves in it")
    lc, ls = LOSS_WEIGHTS[variant]
    lc, ls = lambda_c if lambda_c is not None else lc, lambda_s if lambda_s is not None else ls
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(dev))

    model = MemoryAE(config).to(dev).to(memory_format=torch.channels_last)
    if model.background is not None:  # the camera's empty scene, from the footage the network trains on
        model.background.copy_(empty_scene(train_clips))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    idle = torch.zeros(memory_size, dtype=torch.long, device=dev)  # steps since each item was last nearest
    revived = 0
    state_path = out.with_name(out.name + ".state.pt")
    start_epoch, wall = 0, 0.0
    best: tuple[float, int, dict, ValidationReport | None] = (-np.inf, 0, {}, None)  # rank, epoch, weights, report
    if resume:
        if not state_path.exists():
            raise typer.BadParameter(f"--resume: {state_path} not found")
        state = torch.load(state_path, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, wall = int(state["epoch"]), float(state["wall_time_s"])
        idle, revived = state.get("idle", idle).to(dev), int(state.get("revived", 0))
        torch.set_rng_state(state["rng"])
        loader.generator.set_state(state["loader_rng"])
        if pseudo_loader is not None:
            pseudo_loader.sampler.generator.set_state(state["pseudo_rng"])
        if "best_weights" in state:
            best = (state["best_auc"], state["best_epoch"], state["best_weights"], None)

    print(
        f"train: {len(train_clips)} clips, {len(dataset)} windows; calibration: {len(holdout_clips)} clips; "
        f"{config}; device {dev}, {'bf16' if use_bf16 else 'fp32'}"
    )
    bar = tqdm(total=epochs * len(loader), initial=start_epoch * len(loader), desc="train", unit="step", mininterval=5)
    for epoch in range(start_epoch, epochs):
        started = time.monotonic()
        model.train()
        skipped_batches = iter(pseudo_loader) if pseudo_loader is not None else None
        for inputs, target in loader:
            if skipped_batches is not None:  # one forward for both: the batch norms see both alike
                skipped_inputs, skipped_target = next(skipped_batches)
                inputs = torch.cat([inputs, skipped_inputs])
            inputs = inputs.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            target = target.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                out_ = model(inputs)
            b = len(target)
            every = out_.queries.float()  # (B + B', N, C): the normal windows, then any skipped ones
            queries = every[:b]
            predicted = out_.frame[:b].float()  # (B, C, H, W): the normal windows' predictions, cast once
            last = inputs[:b, -config.channels :]  # (B, C, H, W): the last input frame, a view
            frame_loss = moving.moving_loss(predicted, target, last, motion_weight)
            compact = memory.compactness_loss(queries, model.items)
            separate = memory.separateness_loss(queries, model.items)
            loss = frame_loss + lc * compact + ls * separate
            if lambda_gd:
                sharp = gradient.gradient_loss(predicted, target)
                loss = loss + lambda_gd * sharp
            if skipped_batches is not None:
                speed = pseudo.speed_loss(every[b:], queries, model.items)
                slow = F.mse_loss(out_.frame[b:].float(), skipped_target.to(dev, non_blocking=True))
                loss = loss + lambda_speed * speed
                if lambda_slow:  # off, the skipped windows' frames teach nothing (the runs before this option)
                    loss = loss + lambda_slow * slow
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.items.copy_(memory.update(queries.flatten(0, 1), model.items))
                if revive:
                    items, idle = memory.revive(model.items, queries.flatten(0, 1), idle, revive)
                    revived += int((items != model.items).any(dim=-1).sum())
                    model.items.copy_(items)
            bar.set_postfix(
                epoch=epoch + 1,
                loss=f"{loss.item():.4f}",
                frame=f"{frame_loss.item():.4f}",
                compact=f"{compact.item():.1e}",
                separate=f"{separate.item():.3f}",
                **({"revived": revived} if revive else {}),
                **({"gd": f"{sharp.item():.4f}"} if lambda_gd else {}),
                **({"speed": f"{speed.item():.3f}", "slow": f"{slow.item():.4f}"} if skipped_batches else {}),
                refresh=False,
            )
            bar.update()
        scheduler.step()
        last = epoch + 1 == epochs
        if can_validate and ((validate_every and (epoch + 1) % validate_every == 0) or last):
            report = validate(model, holdout_clips, rate, dev, validation_seed, validation_kinds, draws, relative_error)
            refusal = fast_path_refusal(model, dev)
            use = validation.memory_use(model, holdout_clips, dev)
            tqdm.write(f"epoch {epoch + 1}: {report.summary()}" + (f"; {refusal}" if refusal else ""))
            if use is not None:  # a line of its own: the validation line's percentages stay the benign kinds'
                tqdm.write(f"epoch {epoch + 1}: {use.summary()}")
            if rank(report, refusal) > best[0]:
                weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                best = (rank(report, refusal), epoch + 1, weights, report)
        if snapshot_every and (epoch + 1) % snapshot_every == 0:
            checkpoint.save(
                out.with_name(f"{out.stem}.ep{epoch + 1:02d}.safetensors"), model, rate, None, {"epoch": epoch + 1}
            )
        wall += time.monotonic() - started  # the epoch's validation and snapshot count: they are part of the run
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "wall_time_s": wall,
                "rng": torch.get_rng_state(),
                "loader_rng": loader.generator.get_state(),
                **({"pseudo_rng": pseudo_loader.sampler.generator.get_state()} if pseudo_loader is not None else {}),
                "idle": idle,
                "revived": revived,
                **({"best_auc": best[0], "best_epoch": best[1], "best_weights": best[2]} if best[2] else {}),
            }
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
    bar.close()

    started = time.monotonic()
    model = model.to(memory_format=torch.contiguous_format)
    shipped_epoch, chosen = epochs, None
    if best[2]:
        _, shipped_epoch, weights, chosen = best
        model.load_state_dict(weights)
        if chosen is None:  # resumed after the best epoch: its report was not kept, validate it again
            chosen = validate(model, holdout_clips, rate, dev, validation_seed, validation_kinds, draws, relative_error)
        model.eval()
        calibration = chosen.calibration
        print(f"shipping epoch {shipped_epoch} of {epochs}: {chosen.summary()}")
        print(chosen.levels_summary())
    else:
        calibration = fallback_calibration(model, holdout_clips, dev)
    use = validation.memory_use(model, holdout_clips, dev)
    if use is not None:
        print(use.summary())
    wall += time.monotonic() - started
    provenance = {
        "data": str(data),
        "train_clips": [c.name for c in train_clips],
        "calibration_clips": [c.name for c in holdout_clips],
        "epochs": epochs,
        "shipped_epoch": shipped_epoch,
        "validation": chosen.to_dict() if chosen is not None else None,
        "batch_size": batch_size,
        "lr": lr,
        "lambda_c": lc,
        "lambda_s": ls,
        "augment": augment,
        "augment_kinds": list(changes),
        "crowd": crowd,
        "reverse": reverse,
        "revive": revive,
        "lambda_speed": lambda_speed,
        "lambda_slow": lambda_slow,
        "lambda_gd": lambda_gd,
        "motion_weight": motion_weight,
        "items_revived": revived,
        "memory_use": use._asdict() if use is not None else None,
        "validation_kinds": list(validation_kinds),
        "validation_seed": validation_seed,
        "validation_draws": draws,
        "validation_relative_error": relative_error,
        "seed": seed,
        "precision": "bf16" if use_bf16 else "fp32",
        "device": str(dev),
        "wall_time_s": round(wall, 1),
        "torch": torch.__version__,
        "commit": checkpoint.project_commit(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    checkpoint.save(out, model, rate, calibration, provenance)
    print(f"wrote {out} (wall time of training, validation and calibration {wall / 60:.1f} min)")


def cli() -> None:
    typer.run(main)


if __name__ == "__main__":
    cli()
