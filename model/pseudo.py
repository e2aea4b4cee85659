"""Skipped-frame pseudo anomalies for training: a memory whose distance sees speed (not in the paper).

The memory of every checkpoint so far maps the place: each query position keeps its item whatever moves
through it (docs/experiments.md, "Why the memory carries little"), so the feature distance sees texture (blur, pasted
objects) and not the wrong speed that Ped2's bikes and carts show. Normal footage played faster is the
cheapest wrong speed there is (Astrid et al., "Learning Not to Reconstruct Anomalies", BMVC 2021): a window
of every `stride`-th frame holds the same scene with everything moving `stride` times too fast. The speed
loss below asks the queries of such windows to sit farther from their nearest items, at the positions that
stray most, than the queries of the normal windows of the same step, by a margin. The memory update never
absorbs them. Their target is what a normal scene would show next, the frame right after their last input:
`train --lambda-slow` predicts it from them, meant to teach the predictor that things move at walking speed
whatever its input shows (that paper's idea: output normal data whatever the input), so that a too-fast
object's predicted frame lags it. On Ped2 at 10 fps that next frame is close to the last input, and the loss
added training windows more than it taught speed (docs/experiments.md, "Predicting walking speed").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from model import memory
from model.camera import BENIGN, camera_change
from model.data import Clip, window_tensors
from model.network import ModelConfig

STRIDES = (2, 3, 4)  # frames advanced per frame: walkers at 2-4x their speed, a runner or a cyclist
MARGIN = 0.1  # in squared distance of unit vectors (2 - 2 cos): a stray query's cosine 0.05 lower, set once
TOP_SHARE = 0.05  # share of query positions whose distance counts: where things move, not the empty pavement


class SkippedWindows(torch.utils.data.Dataset):
    """Windows of every `stride`-th frame (stride drawn from STRIDES) of every clip: (input, target) tensors,
    the target the frame right after the last input (normal speed), with the normal windows' share of benign
    camera changes (of `changes`), so the camera never gives them away. They get no busier day (`--crowd`): a
    crowd is the one thing a normal window can show and they cannot. Drawn from `seed`."""

    def __init__(
        self,
        clips: Sequence[Clip],
        config: ModelConfig,
        augment: float = 0.0,
        seed: int = 0,
        changes: Sequence[str] = BENIGN,
    ) -> None:
        self.clips = list(clips)
        self.config = config
        span = (config.window - 1) * max(STRIDES) + 1
        self.index = [(i, t) for i, c in enumerate(self.clips) for t in range(len(c.frames) - span + 1)]
        self.augment = augment
        self.changes = tuple(changes)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        clip, t = self.index[i]
        stride = int(self.rng.choice(STRIDES))
        step, past = self.config.frame_step, self.config.past_frames
        # a normal window played `stride` times too fast: the frames window_tensors keeps (every step-th) are
        # stride x step apart, and the target is the frame a normal `step` after the last input
        last = t + stride * step * (past - 1)
        index = np.append(t + stride * np.arange(past * step), last + step)  # (window,)
        window = self.clips[clip].frames[index]  # (window, H, W, ch)
        if self.augment and self.rng.random() < self.augment:
            window = camera_change(window, str(self.rng.choice(self.changes)), self.rng)
        return window_tensors(window, self.config)


def stray(queries: Tensor, items: Tensor, share: float = TOP_SHARE) -> Tensor:
    """(B, N, C) queries -> (B,) mean squared distance to the nearest item over the `share` of positions that
    stray most (at least one)."""
    distance = (queries - memory.nearest_item(queries, items).detach()).pow(2).sum(dim=-1)  # (B, N)
    k = max(1, round(share * distance.shape[-1]))
    return distance.topk(k, dim=-1).values.mean(dim=-1)


def speed_loss(pseudo: Tensor, normal: Tensor, items: Tensor, margin: float = MARGIN) -> Tensor:
    """Hinge: the skipped windows' queries (B', N, C) must stray from the items by `margin` more than the normal
    windows' (B, N, C) do in the same step. The normal side is detached: only the pseudo queries are pushed."""
    return torch.relu(margin - (stray(pseudo, items).mean() - stray(normal, items).detach().mean()))
