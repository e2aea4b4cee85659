"""The memory module (paper, Sec. 3.2): M items that record prototypical normal features.

Queries are the encoder's features at each spatial position, L2-normalized over channels.
Every function here takes queries shaped (..., N, C) and memory items shaped (..., M, C);
the leading dimensions broadcast, so the same code serves training (one memory shared by
the whole batch) and inference (one memory copy per clip or camera stream).

Memory items receive no gradient: the encoder learns to fit them through the compactness and
separateness losses, and the items move only through `update`, as in the authors' code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


def init_items(memory_size: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """Random unit-norm items, as the authors initialize them."""
    return F.normalize(torch.rand(memory_size, dim, generator=generator), dim=1)


def flatten_queries(features: Tensor) -> Tensor:
    """(B, C, h, w) feature map -> (B, h*w, C) L2-normalized queries."""
    return F.normalize(features.flatten(2).transpose(1, 2), dim=-1)


def unflatten_queries(queries: Tensor, height: int, width: int) -> Tensor:
    """(B, h*w, D) -> (B, D, h, w)."""
    return queries.transpose(1, 2).unflatten(2, (height, width))


def matching_scores(queries: Tensor, items: Tensor) -> Tensor:
    """Inner products query·item: (..., N, C) x (..., M, C) -> (..., N, M)."""
    return queries @ items.transpose(-1, -2)


def read(queries: Tensor, items: Tensor) -> Tensor:
    """Read (Eq. 1-2): each query concatenated with its softmax-weighted sum of items.

    (..., N, C) -> (..., N, 2C). The weights are detached, as in the authors' code.
    """
    weights = matching_scores(queries, items).softmax(dim=-1).detach()  # (..., N, M)
    return torch.cat([queries, weights @ items], dim=-1)


def update(queries: Tensor, items: Tensor, scores: Tensor | None = None) -> Tensor:
    """Update (Eq. 3-4): each item absorbs the queries whose nearest item it is.

    A query's weight for item m is its softmax-over-queries score for m divided by the
    largest such score over all queries, so the most typical query counts fully.
    Softmax runs over the N queries of the leading batch, so pass (B*h*w, C) to pool a
    training batch into one memory, or (B, N, C) with (B, M, C) for per-stream memories.
    Returns the new unit-norm items (..., M, C), detached. `scores`: matching_scores(queries, items), if known.
    """
    queries, items = queries.detach(), items.detach()
    scores = matching_scores(queries, items) if scores is None else scores.detach()  # (..., N, M)
    over_queries = scores.softmax(dim=-2)
    weights = over_queries / over_queries.amax(dim=-2, keepdim=True)
    nearest = F.one_hot(scores.argmax(dim=-1), items.shape[-2]).to(weights.dtype)  # (..., N, M)
    absorbed = (weights * nearest).transpose(-1, -2) @ queries  # (..., M, C)
    return F.normalize(items + absorbed, dim=-1)


def revive(items: Tensor, queries: Tensor, idle: Tensor, patience: int) -> tuple[Tensor, Tensor]:
    """Dead items back to work: an item that has been nobody's nearest for `patience` updates moves onto a
    query the memory describes worst (largest distance to its nearest item), one distinct query each.

    The update rule only moves items that win queries, so an item that stops winning early never moves
    again: the memory ends up with a few live prototypes. Re-seeding dead codes on poorly served inputs is
    the standard cure for this in vector quantization. items (M, C), queries (N, C), idle (M,) updates
    since each item was last nearest -> new items (M, C) and idle counts. Training only.
    """
    queries, items = queries.detach(), items.detach()
    scores = matching_scores(queries, items)  # (N, M)
    best, nearest = scores.max(dim=-1)  # unit vectors: distance to the nearest item is 2 - 2*best
    used = torch.bincount(nearest, minlength=items.shape[0]) > 0
    idle = torch.where(used, torch.zeros_like(idle), idle + 1)
    dead = (idle >= patience).nonzero().flatten()[: len(queries)]
    if len(dead) == 0:
        return items, idle
    worst = best.topk(len(dead), largest=False).indices  # the queries farthest from every item
    items = items.clone()
    items[dead] = F.normalize(queries[worst].to(items.dtype), dim=-1)
    idle[dead] = 0
    return items, idle


class Use(NamedTuple):
    """How the queries of some normal footage use the memory: the collapse, measured."""

    items: int  # M
    in_use: int  # items that are some query's nearest
    effective: float  # exp(entropy) of the share of queries per item: M when all share evenly, 1 when one wins all
    fixed_positions: float  # share of query positions whose nearest item is the same in every frame

    def summary(self) -> str:
        return (
            f"memory: {self.in_use} of {self.items} items in use (effective {self.effective:.1f}), "
            f"{100 * self.fixed_positions:.0f} % of positions keep their item"
        )


def use(nearest: Tensor, memory_size: int) -> Use:
    """(frames, N) index of each query's nearest item -> Use. A position that keeps its item in every frame
    is read the same constant whatever passes through it: the memory then maps the place, not the content."""
    share = torch.bincount(nearest.flatten(), minlength=memory_size).double() / nearest.numel()
    used = share[share > 0]
    return Use(
        memory_size,
        len(used),
        float(torch.exp(-(used * used.log()).sum())),
        float((nearest == nearest[:1]).all(dim=0).double().mean()),
    )


def _nearest_two(queries: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest and second-nearest item for each query: two (..., N, C) tensors."""
    index = matching_scores(queries, items).topk(2, dim=-1).indices  # (..., N, 2)
    expanded = items.unsqueeze(-3).expand(*index.shape[:-1], *items.shape[-2:])  # (..., N, M, C)
    gathered = expanded.gather(-2, index.unsqueeze(-1).expand(*index.shape, items.shape[-1]))
    return gathered[..., 0, :], gathered[..., 1, :]


def nearest_item(queries: Tensor, items: Tensor, scores: Tensor | None = None) -> Tensor:
    """The item each query matches best: (..., N, C)."""
    index = (matching_scores(queries, items) if scores is None else scores).argmax(dim=-1)  # (..., N)
    if items.dim() == 2:
        return items[index]
    batch = torch.arange(items.shape[0], device=items.device).unsqueeze(-1)
    return items[batch, index]


def feature_distance(queries: Tensor, items: Tensor, scores: Tensor | None = None) -> Tensor:
    """Per-sample compactness term: mean squared distance to the nearest item, (B, N, C) -> (B,).

    At test time this is the paper's feature distance D (Eq. 12).
    """
    return (queries - nearest_item(queries, items, scores).detach()).pow(2).mean(dim=(-1, -2))


def compactness_loss(queries: Tensor, items: Tensor) -> Tensor:
    """Feature compactness loss (Eq. 8): pulls each query toward its nearest item."""
    return feature_distance(queries, items).mean()


def separateness_loss(queries: Tensor, items: Tensor, margin: float = 1.0) -> Tensor:
    """Feature separateness loss (Eq. 9): triplet loss, nearest item positive, second negative."""
    positive, negative = _nearest_two(queries, items)
    return F.triplet_margin_loss(
        queries.flatten(0, -2),
        positive.detach().flatten(0, -2),
        negative.detach().flatten(0, -2),
        margin=margin,
    )
