"""Average a training run's snapshots into one network (stochastic weight averaging), then re-select it.

    python scripts/average_snapshots.py runs/skips/s1/ped2.ep08.safetensors runs/skips/s1/ped2.ep12.safetensors \
        runs/skips/s1/ped2.ep16.safetensors --data ../shared/datasets/ped2/training --fps 10 --augment 0.5 \
        --crowd 0.5 --out runs/swa/s1-swa.safetensors
    calibrate runs/swa/s1-swa.safetensors /tmp/holdout --select --draws 3 --inference fp32 --out ...

Snapshots late in one cosine run sit around one basin; their mean is often flatter and less tied to one
seed's last steps, and it is the same network, so it costs nothing at inference. Weights and memory items
are averaged (not for a run with `--revive`: it re-places items, so its items do not average); the batch-norm
statistics of the mean network are recomputed on the run's own training windows (`--augment`, `--crowd`,
`--holdout`, `--seed`: the train command's), as the mean of the snapshots' statistics is not the mean
network's. The output has no calibration: `calibrate --select` gives it one, chosen on validation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import typer
from tqdm import tqdm

from model import checkpoint
from model.data import WindowDataset, load_clips, split_holdout


def main(
    snapshots: list[Path],
    data: Path = typer.Option(..., help="The training footage the run was trained on"),
    out: Path = typer.Option(...),
    fps: float | None = None,
    augment: float = 0.0,
    crowd: float = 0.0,
    holdout: float = 0.125,
    seed: int = 0,
    batches: int = typer.Option(200, help="Training batches (of 16) the batch-norm statistics are measured on"),
) -> None:
    if len(snapshots) < 2:
        raise typer.BadParameter("give two snapshots or more")
    loaded = [checkpoint.load(p) for p in snapshots]
    config = loaded[0].config
    if any(c.config != config for c in loaded):
        raise typer.BadParameter("the snapshots are of different networks")
    model = loaded[0].build("cpu")
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():  # batch-norm counters (integers) are reset below
            value.copy_(torch.stack([c.state[key].float() for c in loaded]).mean(0).to(value.dtype))
    clips = load_clips(data, config, fps, progress=sys.stderr.isatty())
    train_clips, _ = split_holdout(clips, holdout)
    windows = WindowDataset(train_clips, config, augment, seed, crowd)
    loader = torch.utils.data.DataLoader(windows, 16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # the network's only norm
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain mean over the batches below
    model.train()
    with torch.no_grad():
        for k, (inputs, _) in enumerate(tqdm(loader, total=min(batches, len(loader)), desc="batch-norm", disable=None)):
            if k >= batches:
                break
            model(inputs)
    model.eval()
    provenance = {"averaged": [str(p) for p in snapshots], "epochs": [c.provenance.get("epoch") for c in loaded]}
    checkpoint.save(out, model, loaded[0].fps, None, provenance)
    used = min(batches, len(loader))
    print(f"averaged {len(snapshots)} snapshots; batch-norm statistics from {used} batches; wrote {out}")


if __name__ == "__main__":
    typer.run(main)
