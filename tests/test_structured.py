"""Convex belief propagation (issue #33) against brute-force enumeration of every labelling:
exact marginals and log-partition on trees, max-marginals at zero temperature, an upper bound
on loopy graphs, and the loss's gradient against finite differences."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from atrous.structured import (
    FactorGraph,
    bethe_counting,
    chain,
    convex_bp,
    decode,
    fully_connected,
    grid,
    score,
    tree,
    trw_counting,
    uniform_counting,
)
from atrous.structured.learners import crf_loss


def _potentials(graph: FactorGraph, batch: int = 2, scale: float = 1.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, k, e = graph.num_vars, graph.num_states, graph.num_edges
    unary = scale * torch.randn(batch, n, k, generator=g, dtype=torch.float64)
    pairwise = scale * torch.randn(batch, e, k, k, generator=g, dtype=torch.float64)
    return unary, pairwise


def _brute(graph: FactorGraph, unary, pairwise, eps: float = 1.0):
    """Every labelling's score -> exact eps-log-partition, unary and pairwise marginals, and
    max-marginals (the best score with ``y_i = s``)."""
    n, k = graph.num_vars, graph.num_states
    labels = torch.tensor(list(itertools.product(range(k), repeat=n)))  # [L, N]
    b = unary.shape[0]
    scores = torch.stack(
        [score(graph, unary, pairwise, labels[i].expand(b, n)) for i in range(len(labels))], 1
    )  # [B, L]
    log_z = eps * torch.logsumexp(scores / eps, 1)
    p = torch.softmax(scores / eps, 1)
    onehot = torch.nn.functional.one_hot(labels, k).to(p.dtype)  # [L, N, K]
    marg = torch.einsum("bl,lnk->bnk", p, onehot)
    pair = torch.stack(
        [torch.einsum("bl,ls,lt->bst", p, onehot[:, i], onehot[:, j]) for i, j in graph.edges], 1
    )
    maxmarg = torch.stack(
        [
            torch.stack([scores[:, labels[:, i] == s].amax(1) for s in range(k)], -1)  # [B, K]
            for i in range(n)
        ],
        1,
    )
    return log_z, marg, pair, maxmarg, labels[scores.argmax(1)]


TREES = {
    "chain": chain(5, 3),
    "star": tree([-1, 0, 0, 0, 1], 3),
    "branching": tree([-1, 0, 0, 1, 1, 2], 2),
}


@pytest.mark.parametrize("name", TREES)
@pytest.mark.parametrize("eps", [1.0, 0.5])
def test_tree_bp_equals_brute_force_marginals_and_log_partition(name: str, eps: float) -> None:
    graph = TREES[name]
    unary, pairwise = _potentials(graph)
    out = convex_bp(graph, unary, pairwise, eps=eps, counting=bethe_counting(graph), tol=1e-12)
    log_z, marg, pair, _, _ = _brute(graph, unary, pairwise, eps)
    assert out.converged
    torch.testing.assert_close(out.unary, marg, atol=1e-8, rtol=0)
    torch.testing.assert_close(out.pairwise, pair, atol=1e-8, rtol=0)
    torch.testing.assert_close(out.log_z, log_z, atol=1e-8, rtol=0)


def test_zero_temperature_gives_max_marginals_and_the_map() -> None:
    graph = TREES["star"]
    unary, pairwise = _potentials(graph, batch=3, seed=1)
    _, _, _, maxmarg, best = _brute(graph, unary, pairwise)
    out = convex_bp(graph, unary, pairwise, eps=0.0, tol=1e-12)
    shift = out.scores.amax(-1, keepdim=True) - maxmarg.amax(-1, keepdim=True)
    torch.testing.assert_close(out.scores - shift, maxmarg, atol=1e-9, rtol=0)
    assert torch.equal(decode(graph, unary, pairwise), best)
    torch.testing.assert_close(out.log_z, maxmarg.amax((1, 2)), atol=1e-9, rtol=0)


@pytest.mark.parametrize("eps", [0.1, 0.02])
def test_low_temperature_approaches_max_marginals(eps: float) -> None:
    graph = chain(4, 3)
    unary, pairwise = _potentials(graph, seed=2)
    _, _, _, maxmarg, best = _brute(graph, unary, pairwise)
    out = convex_bp(graph, unary, pairwise, eps=eps, tol=1e-12)
    soft = out.scores - out.scores.amax(-1, keepdim=True)
    exact = maxmarg - maxmarg.amax(-1, keepdim=True)
    # eps log sum_{y: y_i = s} exp(F / eps) lies within eps log K^(N-1) of the max
    assert (soft - exact).abs().max() <= 2 * eps * 3 * math.log(3) + 1e-9
    assert torch.equal(out.unary.argmax(-1), best)


def test_loopy_convex_bp_bounds_the_log_partition_and_is_close_on_a_grid() -> None:
    graph = grid(3, 3, 2)
    unary, pairwise = _potentials(graph, batch=3, scale=0.7, seed=3)
    log_z, marg, _, _, _ = _brute(graph, unary, pairwise)
    out = convex_bp(
        graph, unary, pairwise, counting=trw_counting(graph), tol=1e-10, max_passes=2000
    )
    assert out.converged
    assert (out.log_z >= log_z - 1e-7).all()  # tree-reweighted: an upper bound
    assert (out.log_z - log_z).max() < 0.5
    assert (out.unary - marg).abs().max() < 0.1
    # the beliefs are locally consistent: each edge belief sums to its variables' beliefs
    i, j = torch.tensor(graph.edges).T
    torch.testing.assert_close(out.pairwise.sum(-1), out.unary[:, i], atol=1e-7, rtol=0)
    torch.testing.assert_close(out.pairwise.sum(-2), out.unary[:, j], atol=1e-7, rtol=0)


def test_positive_counting_numbers_bound_the_log_partition_on_a_complete_graph() -> None:
    graph = fully_connected(4, 2)
    unary, pairwise = _potentials(graph, seed=4)
    log_z = _brute(graph, unary, pairwise)[0]
    for counting in (trw_counting(graph), uniform_counting(graph)):
        out = convex_bp(graph, unary, pairwise, counting=counting, tol=1e-10, max_passes=3000)
        assert out.converged and (out.log_z >= log_z - 1e-7).all()


def test_tree_reweighted_counting_numbers_are_a_spanning_tree_mixture() -> None:
    graph = grid(2, 3, 2)
    c = trw_counting(graph, trees=50)
    assert c.edge.sum().item() == pytest.approx(graph.num_vars - 1)  # every tree: N - 1 edges
    assert (c.edge > 0).all() and (c.edge <= 1).all()
    assert torch.allclose(c.hat(graph), torch.ones(graph.num_vars, dtype=torch.float64))
    chain_c = trw_counting(chain(4, 2))
    assert torch.equal(chain_c.var, bethe_counting(chain(4, 2)).var)


def test_loss_gradient_matches_finite_differences() -> None:
    graph = tree([-1, 0, 0, 1], 3)
    unary, pairwise = _potentials(graph, batch=2, seed=5)
    labels = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 1]])
    unary.requires_grad_(True)
    pairwise.requires_grad_(True)

    def loss(u, p):
        return crf_loss(graph, u, p, labels, eps=0.7, max_passes=200, tol=1e-13).sum()

    assert torch.autograd.gradcheck(loss, (unary, pairwise), eps=1e-6, atol=1e-6)
    loopy = grid(2, 2, 2)
    u, p = _potentials(loopy, batch=1, seed=6)
    u.requires_grad_(True)
    p.requires_grad_(True)
    y = torch.tensor([[0, 1, 1, 0]])
    assert torch.autograd.gradcheck(
        lambda a, b: crf_loss(loopy, a, b, y, max_passes=3000, tol=1e-13).sum(),
        (u, p),
        eps=1e-6,
        atol=1e-5,
    )


def test_bad_shapes_labels_and_counting_numbers_are_named() -> None:
    graph = chain(3, 4)
    unary, pairwise = _potentials(graph)
    with pytest.raises(ValueError, match=r"unary potentials must be \[B, 3, 4\]"):
        convex_bp(graph, unary[:, :2], pairwise)
    with pytest.raises(ValueError, match=r"pairwise potentials must be \[B, 2, 4, 4\]"):
        convex_bp(graph, unary, pairwise[:, :, :3])
    with pytest.raises(ValueError, match=r"labels must lie in 0..3, got 0..4"):
        score(graph, unary, pairwise, torch.tensor([[0, 1, 4], [0, 0, 0]]))
    with pytest.raises(ValueError, match="appears twice"):
        FactorGraph(3, 2, ((0, 1), (1, 0)))
    with pytest.raises(ValueError, match="contain a cycle"):
        tree([1, 2, 0], 2)
    with pytest.raises(ValueError, match="edge counting numbers must be > 0"):
        convex_bp(graph, unary, pairwise, counting=uniform_counting(graph, 0.0))


def test_runs_in_float32_and_batches_independently() -> None:
    graph = grid(2, 3, 3)
    unary, pairwise = _potentials(graph, batch=4)
    whole = convex_bp(graph, unary.float(), pairwise.float(), tol=1e-6, max_passes=500)
    one = convex_bp(graph, unary[2:3].float(), pairwise[2:3].float(), tol=1e-6, max_passes=500)
    assert whole.unary.dtype == torch.float32
    torch.testing.assert_close(whole.unary[2:3], one.unary, atol=1e-4, rtol=0)


def test_each_set_of_counting_numbers_gets_its_own_plan() -> None:
    # plans are cached: counting numbers made afresh on every call must not meet a stale plan
    graph = fully_connected(3, 2)
    unary, pairwise = _potentials(graph, seed=7)
    fresh = {}
    for value in (1.0, 2.0, 1.0, 2.0):
        out = convex_bp(graph, unary, pairwise, counting=uniform_counting(graph, value), tol=1e-12)
        if value in fresh:
            torch.testing.assert_close(out.log_z, fresh[value], atol=1e-9, rtol=0)
        fresh[value] = out.log_z
    assert (fresh[2.0] - fresh[1.0]).abs().min() > 1e-3  # more entropy weight, larger bound
