"""Anomaly scores (paper, Sec. 3.4): PSNR of the predicted frame and the memory feature distance.

Both are normalized and fused in model.calibration (the paper's per-clip min-max, or the causal
`Calibration` the service uses).

`score_step` is the one per-frame inference path (used by `evaluate`, calibration and the
service engine): it scores a batch of windows, each with its own memory copy, and applies the
test-time memory update to the copies whose frame looks normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from model import memory, regions
from model.data import Clip, window_tensors
from model.network import MemoryAE, Variant

if TYPE_CHECKING:  # a type only: the inference backends sit above scoring, not below it
    from model.inference import InferencePath

# The paper's test-time update threshold per variant (the fusion weight λ is in model.calibration).
UPDATE_THRESHOLD: dict[Variant, float] = {"prediction": 0.01, "reconstruction": 0.015}


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel squared error with pixels in [0, 1]: (B, ch, H, W) x2 in [-1, 1] -> (B, ch, H, W)."""
    return (pred - target).mul_(0.5).square_()


def psnr(pred: Tensor, target: Tensor, error: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio per sample, pixels in [0, 1]: (B, ch, H, W) x2 -> (B,)."""
    mse = (squared_error(pred, target) if error is None else error).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def weighted_error(pred: Tensor, target: Tensor, error: Tensor | None = None) -> Tensor:
    """Error-weighted pixel error (authors' code): large errors count more. (B,)

    Decides the test-time memory update: a frame this close to normal may teach the memory.
    """
    error = squared_error(pred, target) if error is None else error  # (B, ch, H, W), pixels in [0, 1]
    weight = 1 - torch.exp(-error)
    return (weight * error).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-12)


class StepScores(NamedTuple):
    psnr: Tensor  # (B,) whole-frame PSNR (the paper's)
    distance: Tensor  # (B,) mean feature distance to the nearest memory item (the paper's)
    region_psnr: Tensor  # (B, Ke) PSNR of the worst error window, one column per error window side
    region_distance: Tensor  # (B, Kd) mean feature distance in the worst window, one column per side
    distance_floor: Tensor  # (B,) the frame's median distance over query positions (regions.relative)
    error_box: Tensor  # (B, Ke, 4) x, y, w, h of each worst error window, model pixels
    distance_box: Tensor  # (B, Kd, 4) the same for the distance windows, model pixels
    frame: Tensor  # (B, ch, H, W) predicted frame in [-1, 1]
    items: Tensor  # (B, M, C) memory copies after the test-time update
    error: Tensor  # (B, ch, H, W) squared pixel error, pixels in [0, 1]: where the prediction failed
    error_floor: Tensor  # (B, Ke) PSNR of the frame's median window, per error window side (regions.relative_psnr)


def _to_psnr(mse: Tensor) -> Tensor:
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


@torch.inference_mode()
def score_step(
    model: MemoryAE | InferencePath,
    x: Tensor,
    target: Tensor,
    items: Tensor,
    update_threshold: float,
    error_windows: Sequence[int] = (0,),
    distance_windows: Sequence[int] = (0,),
    watched: Tensor | None = None,
) -> StepScores:
    """Score B windows, each against its own memory copy items (B, M, C).

    `model` is the fp32 network or any `model.inference` path: the forward may run in bf16 or in
    another runtime, but PSNR, feature distance and the memory update below run in float32.
    The region measures come from the same error map and query matching: no second pass.
    `watched` (B, H, W) in [0, 1], optional: where each frame may be scored (an operator's mask). Every
    measure, the update rule and the returned error then see the watched pixels only.
    """
    out = model(x, items)
    pred = out.frame.float()
    queries = out.queries.float()
    error = squared_error(pred, target)  # shared by PSNR, the regions, the update rule and the caller's heatmap
    scores = memory.matching_scores(queries, items)  # (B, N, M), shared by distance and update
    h, w = pred.shape[-2:]
    distance_map = regions.position_distance(
        queries, memory.nearest_item(queries, items, scores), h, w
    )  # (B, h/8, w/8)
    error_map = error[:, 0] if error.shape[1] == 1 else error.mean(dim=1)  # (B, H, W), a view for grey
    if watched is None:
        worst_error = [regions.worst_window(error_map, k) for k in error_windows]
        worst_distance = [regions.worst_window(distance_map, k) for k in distance_windows]
        frame_error, frame_distance = error_map.mean(dim=(1, 2)), distance_map.mean(dim=(1, 2))
        floor = distance_map.flatten(1).median(dim=1).values
    else:
        places = regions.watched_positions(watched)  # (B, h/8, w/8)
        worst_error = [regions.worst_window(error_map, k, watched) for k in error_windows]
        worst_distance = [regions.worst_window(distance_map, k, places) for k in distance_windows]
        frame_error = regions.worst_window(error_map, 0, watched).value
        frame_distance = regions.worst_window(distance_map, 0, places).value
        floor = regions.worst_window(distance_map, 1, places).typical  # median over the watched positions
        error = error.mul_(watched.unsqueeze(1))  # measured: an ignored pixel is now no error to the update rule
        # nor to the caller's heatmap
    learn = weighted_error(pred, target, error) < update_threshold  # (B,)
    if learn.any():
        items = torch.where(learn[:, None, None], memory.update(queries, items, scores), items)
    return StepScores(
        _to_psnr(frame_error),
        frame_distance,
        _to_psnr(torch.stack([r.value for r in worst_error], dim=1)),
        torch.stack([r.value for r in worst_distance], dim=1),
        floor,
        torch.stack([r.box for r in worst_error], dim=1),
        torch.stack([r.box for r in worst_distance], dim=1) * regions.QUERY_STRIDE,
        pred,
        items,
        error,
        _to_psnr(torch.stack([r.typical for r in worst_error], dim=1)),
    )


@dataclass
class ClipScores:
    name: str
    psnr: np.ndarray  # (T - window + 1,) one value per scored frame
    distance: np.ndarray
    first_frame: int  # index of the clip frame the first score belongs to
    region_psnr: np.ndarray  # (T - window + 1, Ke): one column per error window asked for
    region_distance: np.ndarray  # (T - window + 1, Kd)
    distance_floor: np.ndarray  # (T - window + 1,) each frame's median distance
    error_floor: np.ndarray  # (T - window + 1, Ke) PSNR of each error window side's median window

    def measures(
        self, error_column: int = 0, distance_column: int = 0, relative: bool = False, error_relative: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (P, D) pair a calibration scores: one column of each region measure, each relative if asked."""
        psnr, distance = self.region_psnr[:, error_column], self.region_distance[:, distance_column]
        if error_relative:
            psnr = regions.relative_psnr(psnr, self.error_floor[:, error_column])
        return psnr, distance / np.maximum(self.distance_floor, 1e-12) if relative else distance


def score_clips(
    model: MemoryAE | InferencePath,
    clips: Sequence[Clip],
    update_threshold: float,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: bool = False,
    error_windows: Sequence[int] = (0,),
    distance_windows: Sequence[int] = (0,),
    watched: Tensor | None = None,
) -> list[ClipScores]:
    """Score every frame of every clip as a live stream would see it: in order, one memory copy per clip.

    Clips advance in lockstep so each step batches one window from up to `batch_size` clips,
    the same cross-stream batching the service does. Region measures come for every window side
    asked for (validation compares several in one pass). `watched` (H, W): one camera mask for every clip
    (see score_step).
    """
    from tqdm import tqdm

    config = model.config
    window = config.window
    total = sum(max(0, len(c.frames) - window + 1) for c in clips)
    bar = tqdm(total=total, desc="score", unit="frame", disable=not progress)
    results: list[ClipScores] = []
    ke = 3 + len(error_windows)
    columns = ke + len(distance_windows) + len(error_windows)  # psnr, distance, floor, regions, error floors
    for start in range(0, len(clips), batch_size):
        group = clips[start : start + batch_size]
        steps = [len(c.frames) - window + 1 for c in group]
        items = model.items.detach().to(device).expand(len(group), -1, -1).clone()  # (K, M, C)
        out = [np.empty((max(s, 0), columns), np.float32) for s in steps]  # psnr, distance, regions
        for t in range(max(steps, default=0)):
            active = [i for i, s in enumerate(steps) if t < s]
            windows = np.stack([group[i].frames[t : t + window] for i in active])  # (k, window, H, W, ch)
            inputs, target = window_tensors(windows, config, device)
            index = torch.tensor(active, device=device)
            where = None if watched is None else watched.to(device).expand(len(active), -1, -1)
            step = score_step(
                model, inputs, target, items[index], update_threshold, error_windows, distance_windows, where
            )
            items[index] = step.items
            row = (
                torch.cat(
                    [
                        step.psnr[:, None],
                        step.distance[:, None],
                        step.distance_floor[:, None],
                        step.region_psnr,
                        step.region_distance,
                        step.error_floor,
                    ],
                    dim=1,
                )
                .cpu()
                .numpy()
            )
            for j, i in enumerate(active):
                out[i][t] = row[j]
            bar.update(len(active))
        kd = ke + len(distance_windows)
        results += [
            ClipScores(c.name, o[:, 0], o[:, 1], window - 1, o[:, 3:ke], o[:, ke:kd], o[:, 2], o[:, kd:])
            for c, o in zip(group, out)
        ]
    bar.close()
    return results
