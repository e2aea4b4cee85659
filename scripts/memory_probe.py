"""Why does the memory distance carry so little? A probe of a checkpoint on normal footage.

Prints, over every window of the given clips (use held-out normal clips, never test footage):
- how the queries use the M memory items (share of queries per nearest item, effective count), and how
  many query positions keep the same nearest item in every frame (then the items map the fixed scene,
  not what moves through it);
- how far the queries sit from their nearest item (the paper's D) and how alike the queries are
  (effective rank of the query matrix: 1 means every position says the same thing);
- how much the prediction relies on the memory bottleneck: PSNR with the read as trained, with the
  bottleneck's input replaced by its frame mean (no spatial information), and with it zeroed (the
  decoder then predicts from the skip connections alone).

    python scripts/memory_probe.py weights/ped2.safetensors ../shared/datasets/ped2/training/frames/15 ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model import checkpoint, memory
from model.data import load_clip, window_tensors
from model.scoring import psnr


def windows(frames: np.ndarray, size: int, batch: int):
    """Consecutive windows of `size` frames, `batch` at a time: (B, size, H, W, ch) uint8."""
    starts = range(len(frames) - size + 1)
    for i in range(0, len(starts), batch):
        yield np.stack([frames[t : t + size] for t in starts[i : i + batch]])


@torch.no_grad()
def probe(path: Path, clips: list[Path], batch: int = 16) -> dict[str, float]:
    ck = checkpoint.load(path)
    net = ck.build()
    config = net.config
    items = net.items  # (M, C)
    queries, distances = [], []
    psnrs: dict[str, list[torch.Tensor]] = {"trained": [], "frame mean": [], "zeroed": []}
    for source in clips:
        clip = load_clip(source, config, ck.fps)
        for w in windows(clip.frames, config.window, batch):
            x, target = window_tensors(w, config)
            features, skips = net.encode(x)  # (B, C, h, w)
            h, wd = features.shape[-2:]
            q = memory.flatten_queries(features)  # (B, N, C)
            z = memory.unflatten_queries(memory.read(q, items), h, wd)  # (B, 2C, h, w)
            variants = {"trained": z, "frame mean": z.mean(dim=(2, 3), keepdim=True).expand_as(z), "zeroed": 0 * z}
            for name, zz in variants.items():
                psnrs[name].append(psnr(net.decode(zz, skips), target))
            queries.append(q.flatten(0, 1))
            distances.append(memory.feature_distance(q, items))
    q = torch.cat(queries)  # (frames*N, C)
    scores = memory.matching_scores(q, items)  # (frames*N, M)
    # Items that score the same up to float rounding are one item to a query: the first of them is its nearest.
    # (A matrix product need not round equal columns alike, so identical items could look like several in use.)
    tie = 1e-5 * scores.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
    nearest = (scores >= scores.amax(dim=-1, keepdim=True) - tie).int().argmax(dim=-1)
    used = memory.use(nearest.view(-1, features.shape[-2] * features.shape[-1]), items.shape[0])
    singular = torch.linalg.svdvals(q - q.mean(dim=0))
    p = singular.square() / singular.square().sum()
    p = p[p > 0]
    out = {
        "memory items M": float(used.items),
        "items ever nearest": float(used.in_use),
        "effective items (exp entropy of use)": used.effective,
        "largest item share": float(torch.bincount(nearest).max() / len(nearest)),
        "positions whose item never changes": used.fixed_positions,
        "D mean (paper's distance)": float(torch.cat(distances).mean()),
        "query cosine to mean query": float((q @ memory.F.normalize(q.mean(dim=0), dim=0)).mean()),
        "query effective rank (of C)": float(torch.exp(-(p * p.log()).sum())),
        "query dim C": float(q.shape[1]),
    }
    for name, values in psnrs.items():
        out[f"PSNR, bottleneck {name} (dB)"] = float(torch.cat(values).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("clips", type=Path, nargs="+", help="held-out normal clips (frame folders or videos)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name, value in probe(args.weights, args.clips).items():
        print(f"{name:42s} {value:.6g}")


if __name__ == "__main__":
    main()
