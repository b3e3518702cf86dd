"""The structured learners (issue #33): nested and blended joint training reach the same
optimum, which is the exact CRF optimum on a tree (brute force); the message store's memory; the
unary and piecewise losses; the models' shapes and the metrics."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from atrous.structured import FactorGraph, chain, grid, score
from atrous.structured.learners import (
    BlendedLearner,
    MessageStore,
    NestedLearner,
    PiecewiseLearner,
    UnaryLearner,
    crf_loss,
)
from atrous.structured.metrics import HammingError, WordAccuracy, hamming_error, word_metrics
from atrous.structured.tagging import TagModel, tag_graph
from atrous.structured.words import WordModel, word_graph


class _Linear(nn.Module):
    """Unaries linear in per-variable features, one shared pair table: a convex problem."""

    def __init__(self, graph: FactorGraph, features: int) -> None:
        super().__init__()
        self.graph = graph
        self.unary = nn.Linear(features, graph.num_states, bias=False, dtype=torch.float64)
        k = graph.num_states
        self.pair = nn.Parameter(torch.zeros(k, k, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.graph.num_states
        return self.unary(x), self.pair.expand(x.shape[0], self.graph.num_edges, k, k)


def _problem(graph: FactorGraph, n: int = 6, features: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, graph.num_vars, features, generator=g, dtype=torch.float64)
    y = torch.randint(0, graph.num_states, (n, graph.num_vars), generator=g)
    return x, y


def _train(learner_cls, graph, x, y, steps: int, **kwargs) -> _Linear:
    torch.manual_seed(0)
    model = _Linear(graph, x.shape[-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=0.1)
    learner = learner_cls(model, graph, optimizer, **kwargs)
    index = torch.arange(len(x))
    for _ in range(steps):
        learner.step(x, y, index)
    return model


def _exact_objective(model: _Linear, graph: FactorGraph, x, y) -> torch.Tensor:
    """Mean exact CRF negative log-likelihood (every labelling enumerated) + weight decay."""
    unary, pairwise = model(x)
    labels = torch.tensor(list(itertools.product(range(graph.num_states), repeat=graph.num_vars)))
    scores = torch.stack([score(graph, unary, pairwise, lab.expand(len(x), -1)) for lab in labels])
    nll = (torch.logsumexp(scores, 0) - score(graph, unary, pairwise, y)).mean()
    return nll + 0.05 * sum((p**2).sum() for p in model.parameters())


def test_nested_and_blended_reach_the_exact_optimum_on_a_chain() -> None:
    graph = chain(3, 3)
    x, y = _problem(graph)
    nested = _train(NestedLearner, graph, x, y, 400, max_passes=100, tol=1e-10)
    blended = _train(BlendedLearner, graph, x, y, 400, num_examples=len(x))
    for a, b in zip(nested.parameters(), blended.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    objective = _exact_objective(nested, graph, x, y)
    grads = torch.autograd.grad(objective, list(nested.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-4  # a stationary point of the exact loss
    assert float(nested.pair.detach().abs().max()) > 0.05  # and the pair table did learn something


def test_nested_and_blended_agree_on_a_loopy_grid() -> None:
    graph = grid(2, 2, 2)
    x, y = _problem(graph, n=5)
    nested = _train(NestedLearner, graph, x, y, 300, max_passes=500, tol=1e-10)
    blended = _train(BlendedLearner, graph, x, y, 300, num_examples=len(x))
    for a, b in zip(nested.parameters(), blended.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_blended_keeps_each_examples_messages_and_states_its_memory() -> None:
    graph = chain(4, 5)
    x, y = _problem(graph, n=7)
    model = _Linear(graph, x.shape[-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # potentials frozen
    learner = BlendedLearner(model, graph, optimizer, num_examples=7)
    assert learner.memory_bytes() == 7 * 3 * 2 * 5 * 4  # examples x edges x 2 x states x fp32
    learner.step(x[:3], y[:3], torch.arange(3))
    assert learner.store.messages[:3].abs().sum() > 0 and learner.store.messages[3:].eq(0).all()
    # a frozen model and stored messages: the loss falls to the converged one, pass by pass
    losses = [learner.loss(x[:3], y[:3], torch.arange(3)).item() for _ in range(6)]
    unary, pairwise = model(x[:3])
    exact = crf_loss(graph, unary, pairwise, y[:3], tol=1e-12).mean().item()
    assert losses[-1] == pytest.approx(exact, abs=1e-5)
    with pytest.raises(ValueError, match="needs each example's index"):
        learner.loss(x, y, None)
    with pytest.raises(ValueError, match=r"example index must lie in 0..6"):
        MessageStore(7, graph).get(torch.tensor([7]))


def test_unary_and_piecewise_losses_are_local_cross_entropies() -> None:
    graph = chain(3, 4)
    x, y = _problem(graph, n=2, features=2)
    model = _Linear(graph, 2)
    with torch.no_grad():
        model.pair.copy_(torch.randn(4, 4, dtype=torch.float64))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    unary, pairwise = model(x)
    log_u = torch.log_softmax(unary, -1).gather(2, y.unsqueeze(-1)).squeeze(-1)
    log_p = torch.log_softmax(model.pair.flatten(), 0).view(4, 4)
    pair_ll = log_p[y[:, :-1], y[:, 1:]]
    expected_unary = -log_u.mean()
    expected_piecewise = -(log_u.sum() + pair_ll.sum()) / 2
    assert UnaryLearner(model, graph, opt).loss(x, y).item() == pytest.approx(expected_unary.item())
    got = PiecewiseLearner(model, graph, opt).loss(x, y).item()
    assert got == pytest.approx(expected_piecewise.item())
    with pytest.raises(ValueError, match=r"labels must lie in 0..3"):
        UnaryLearner(model, graph, opt).step(x, y + 4)


def test_word_and_tag_models_give_potentials_that_fit_their_graphs() -> None:
    unary, pairwise = WordModel()(torch.rand(2, 5, 16, 8))
    word_graph(5).check(unary, pairwise)
    assert torch.equal(pairwise[0, 0], pairwise[1, 3])  # one shared letter-pair table
    model = TagModel(6, width=4)
    unary, pairwise = model(torch.rand(3, 3, 32, 32))
    tag_graph(6).check(unary, pairwise)
    assert pairwise.shape == (3, 15, 2, 2) and unary[..., 0].eq(0).all()
    with pytest.raises(ValueError, match=r"word images must be \[B, L, H, W\]"):
        WordModel()(torch.rand(5, 16, 8))


def test_metrics_count_letters_words_and_tags() -> None:
    pred = torch.tensor([[0, 1, 2], [3, 3, 3], [1, 1, 1]])
    true = torch.tensor([[0, 1, 2], [3, 0, 3], [2, 2, 2]])
    assert word_metrics(pred, true) == {"char_accuracy": 5 / 9, "word_accuracy": 1 / 3}
    a, b = WordAccuracy(), WordAccuracy()
    a.update(pred[:1], true[:1])
    b.update(pred[1:], true[1:])
    a.merge(b)
    assert a.compute() == word_metrics(pred, true)
    tags_pred = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0]])
    tags_true = torch.tensor([[1, 1, 0, 1], [0, 0, 1, 1]])
    assert hamming_error(tags_pred, tags_true) == 3 / 8
    h = HammingError()
    h.update(tags_pred, tags_true)
    h.reset()
    assert h.compute() == {"hamming_error": 0.0}
    with pytest.raises(ValueError, match="must both be"):
        word_metrics(pred, true[:, :2])
