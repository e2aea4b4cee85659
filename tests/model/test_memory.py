"""The vectorized memory operations against plain-loop references written from the paper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model import memory


def random_unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def loop_read(queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    out = []
    for q in queries:
        scores = torch.stack([q @ m for m in items])
        w = torch.exp(scores) / torch.exp(scores).sum()
        out.append(torch.cat([q, sum(w[i] * items[i] for i in range(len(items)))]))
    return torch.stack(out)


def loop_update(queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    n, m = len(queries), len(items)
    scores = [[float(queries[i] @ items[j]) for j in range(m)] for i in range(n)]
    # softmax over queries, per item
    over_queries = [[0.0] * m for _ in range(n)]
    for j in range(m):
        col = torch.tensor([scores[i][j] for i in range(n)], dtype=torch.float64)
        e = torch.exp(col)
        for i in range(n):
            over_queries[i][j] = float(e[i] / e.sum())
    new = []
    for j in range(m):
        largest = max(over_queries[i][j] for i in range(n))
        total = torch.zeros_like(items[j])
        for i in range(n):
            nearest = max(range(m), key=lambda k, i=i: scores[i][k])
            if nearest == j:
                total = total + over_queries[i][j] / largest * queries[i]
        v = items[j] + total
        new.append(v / v.norm())
    return torch.stack(new)


def loop_nearest_two(q: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = sorted(range(len(items)), key=lambda k: -float(q @ items[k]))
    return items[order[0]], items[order[1]]


def test_read_matches_loop() -> None:
    queries, items = random_unit(37, 16, seed=0), random_unit(10, 16, seed=1)
    torch.testing.assert_close(memory.read(queries, items), loop_read(queries, items))


def test_update_matches_loop() -> None:
    queries, items = random_unit(50, 8, seed=2), random_unit(10, 8, seed=3)
    torch.testing.assert_close(memory.update(queries, items), loop_update(queries, items))


def test_batched_update_is_per_sample() -> None:
    """(B, N, C) queries with (B, M, C) items: each sample updates only its own memory copy."""
    queries, items = random_unit(3, 20, 8, seed=4), random_unit(3, 10, 8, seed=5)
    batched = memory.update(queries, items)
    for b in range(3):
        torch.testing.assert_close(batched[b], loop_update(queries[b], items[b]))


def test_losses_match_loop() -> None:
    queries, items = random_unit(2, 30, 8, seed=6), random_unit(10, 8, seed=7)
    flat = queries.reshape(-1, 8)
    compact, triplet = 0.0, 0.0
    for q in flat:
        pos, neg = loop_nearest_two(q, items)
        compact += float(((q - pos) ** 2).mean())
        triplet += max(float((q - pos + 1e-6).norm() - (q - neg + 1e-6).norm()) + 1.0, 0.0)
    assert memory.compactness_loss(queries, items).item() == pytest.approx(compact / len(flat))
    assert memory.separateness_loss(queries, items).item() == pytest.approx(triplet / len(flat))


def test_feature_distance_with_per_sample_items() -> None:
    queries, items = random_unit(4, 12, 8, seed=8), random_unit(4, 10, 8, seed=9)
    per_sample = memory.feature_distance(queries, items)
    for b in range(4):
        expected = torch.stack([((q - loop_nearest_two(q, items[b])[0]) ** 2).mean() for q in queries[b]]).mean()
        assert per_sample[b].item() == pytest.approx(expected.item())


def test_query_equal_to_an_item_has_zero_compactness() -> None:
    items = random_unit(10, 16, seed=10)
    queries = items[[3, 7, 7]].unsqueeze(0)  # (1, 3, C)
    assert memory.compactness_loss(queries, items).item() == pytest.approx(0.0, abs=1e-12)


def test_separateness_is_zero_when_second_item_is_far_enough() -> None:
    # Orthogonal items sit sqrt(2) apart: a query on one item clears the margin of 1.
    items = torch.eye(4, dtype=torch.float64)
    queries = items[:2].unsqueeze(0)
    assert memory.separateness_loss(queries, items).item() == pytest.approx(0.0, abs=1e-6)


def test_separateness_is_margin_when_items_coincide() -> None:
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    queries = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    assert memory.separateness_loss(queries, items).item() == pytest.approx(1.0, abs=1e-5)


def test_update_keeps_items_unit_norm_and_leaves_unmatched_items() -> None:
    items = torch.eye(4, dtype=torch.float64)
    queries = F.normalize(torch.tensor([[1.0, 0.1, 0.0, 0.0], [0.9, 0.0, 0.2, 0.0]], dtype=torch.float64), dim=-1)
    updated = memory.update(queries, items)
    torch.testing.assert_close(updated.norm(dim=-1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(updated[1:], items[1:])  # only item 0 is any query's nearest
    assert updated[0, 1] > 0 and updated[0, 2] > 0  # and it moved toward both queries


def test_update_gives_no_gradient_and_read_weights_are_detached() -> None:
    queries = random_unit(5, 8, seed=11).requires_grad_()
    items = random_unit(10, 8, seed=12).requires_grad_()
    assert not memory.update(queries, items).requires_grad
    memory.read(queries, items)[:, 8:].sum().backward()
    assert queries.grad is None or torch.count_nonzero(queries.grad) == 0  # weights detached: no path to queries
    assert items.grad is not None


def test_flatten_queries_normalizes_each_position() -> None:
    features = torch.randn(2, 16, 3, 5)
    queries = memory.flatten_queries(features)
    assert queries.shape == (2, 15, 16)
    torch.testing.assert_close(queries.norm(dim=-1), torch.ones(2, 15))
    torch.testing.assert_close(memory.unflatten_queries(queries, 3, 5), F.normalize(features, dim=1))


def test_revive_moves_a_dead_item_onto_the_worst_served_query_after_patience() -> None:
    items = torch.eye(4, dtype=torch.float64)  # items 2 and 3 are nobody's nearest
    queries = F.normalize(
        torch.tensor([[1.0, 0.1, 0.0, 0.0], [0.1, 1.0, 0.0, 0.0], [1.0, 0.9, 0.0, 0.0]], dtype=torch.float64), dim=-1
    )
    idle = torch.zeros(4, dtype=torch.long)
    for _ in range(2):  # not yet dead: nothing moves, the idle count grows
        revived, idle = memory.revive(items, queries, idle, patience=3)
        torch.testing.assert_close(revived, items)
    assert idle.tolist() == [0, 0, 2, 2]
    revived, idle = memory.revive(items, queries, idle, patience=3)
    torch.testing.assert_close(revived[:2], items[:2])  # live items stay where they are
    # the two queries farthest from their nearest item, one each: the mixed one first, then a pure one
    torch.testing.assert_close(revived[2], queries[2])
    assert min((revived[3] - q).abs().max() for q in queries[:2]) < 1e-12
    torch.testing.assert_close(revived.norm(dim=-1), torch.ones(4, dtype=torch.float64))
    assert idle.tolist() == [0, 0, 0, 0]


def test_revive_keeps_idle_count_per_item() -> None:
    items = torch.eye(3, dtype=torch.float64)
    idle = torch.tensor([5, 0, 1])
    queries = items[:1].clone()  # only item 0 wins
    revived, idle = memory.revive(items, queries, idle, patience=10)
    assert idle.tolist() == [0, 1, 2]
    torch.testing.assert_close(revived, items)


def test_use_counts_items_shares_and_positions_that_keep_their_item() -> None:
    nearest = torch.tensor([[0, 1, 1], [0, 2, 1]])  # 2 frames x 3 query positions
    used = memory.use(nearest, memory_size=4)
    assert used.items == 4 and used.in_use == 3
    share = torch.tensor([2 / 6, 3 / 6, 1 / 6], dtype=torch.float64)
    assert used.effective == pytest.approx(float(torch.exp(-(share * share.log()).sum())))
    assert used.fixed_positions == pytest.approx(2 / 3)  # positions 0 and 2 keep theirs, position 1 switches
    assert used.summary() == "memory: 3 of 4 items in use (effective 2.7), 67 % of positions keep their item"
    one = memory.use(torch.zeros(5, 3, dtype=torch.long), memory_size=4)
    assert one.in_use == 1 and one.effective == 1 and one.fixed_positions == 1
