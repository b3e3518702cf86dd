"""Learners for deep structured models: the potentials come from any ``nn.Module`` that maps a
batch of inputs to ``(unary [B, N, K], pairwise [B, E, K, K])``; each learner turns a batch and
its labels ``[B, N]`` into a loss and takes one optimiser step.

- :class:`UnaryLearner`: each variable on its own (cross-entropy of its unary potentials).
- :class:`PiecewiseLearner`: each factor on its own, normalised locally (Sutton & McCallum's
  piecewise training): the unary cross-entropy plus, per edge, a cross-entropy over its K*K
  joint states.
- :class:`NestedLearner` (Chen et al., Algorithm 1): convex BP to convergence at every step; the
  loss ``eps log Z~ - F(y)`` with gradient ``sum_r (b_r - 1[y_r]) df_r/dw``.
- :class:`BlendedLearner` (Algorithm 2): each example keeps its messages across steps; a step
  runs one message pass from the stored messages, then one gradient step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .bp import convex_bp, decode, score
from .graph import Counting, FactorGraph


def _surrogate(beliefs, unary: Tensor, pairwise: Tensor) -> Tensor:
    """``log Z~`` in value and ``sum_r b_r df_r`` in gradient (Danskin: the beliefs maximise
    the primal, so they are its gradient with respect to the potentials)."""
    linear = (beliefs.unary * unary).sum((1, 2)) + (beliefs.pairwise * pairwise).sum((1, 2, 3))
    return beliefs.log_z + linear - linear.detach()


def crf_loss(
    graph: FactorGraph,
    unary: Tensor,
    pairwise: Tensor,
    labels: Tensor,
    *,
    eps: float = 1.0,
    counting: Counting | None = None,
    messages: Tensor | None = None,
    max_passes: int = 100,
    tol: float = 1e-6,
) -> Tensor:
    """Per-example ``log Z~ - F(y)`` ``[B]``: the CRF negative log-likelihood at temperature
    ``eps`` with the convex-BP log-partition; differentiable in the potentials."""
    beliefs = convex_bp(
        graph,
        unary.detach(),
        pairwise.detach(),
        eps=eps,
        counting=counting,
        messages=messages,
        max_passes=max_passes,
        tol=tol,
    )
    return _surrogate(beliefs, unary, pairwise) - score(graph, unary, pairwise, labels)


Potentials = Callable[[Tensor], tuple[Tensor, Tensor]]


class Learner:
    """Shared plumbing: ``step(x, y, index)`` = zero grads, ``loss``, backward, optimiser step.
    ``index`` ``[B]`` numbers the examples in the training set (the blended learner's store)."""

    def __init__(
        self,
        model: nn.Module,
        graph: FactorGraph,
        optimizer: torch.optim.Optimizer,
        *,
        eps: float = 1.0,
        counting: Counting | None = None,
    ) -> None:
        self.model, self.graph, self.optimizer = model, graph, optimizer
        self.eps, self.counting = eps, counting

    def loss(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def step(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> float:
        """One gradient step on the batch; returns its mean loss."""
        self.graph.check_labels(y)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(x, y, index)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def memory_bytes(self) -> int:
        """Bytes this learner keeps between steps besides the model and optimiser."""
        return 0


class UnaryLearner(Learner):
    """Every variable alone: cross-entropy of its unary potentials (pairwise ones unused)."""

    def loss(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> Tensor:
        unary, _ = self.model(x)
        return F.cross_entropy(unary.flatten(0, 1), y.flatten())


class PiecewiseLearner(Learner):
    """Every factor alone: unary cross-entropy plus, per edge, a cross-entropy over its
    ``K * K`` joint states, summed over factors and averaged over examples."""

    def loss(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> Tensor:
        unary, pairwise = self.model(x)
        k = self.graph.num_states
        total = F.cross_entropy(unary.flatten(0, 1), y.flatten(), reduction="sum")
        if self.graph.num_edges:
            edges = torch.tensor(self.graph.edges, device=y.device)
            joint = y[:, edges[:, 0]] * k + y[:, edges[:, 1]]
            total = total + F.cross_entropy(
                pairwise.flatten(2).flatten(0, 1), joint.flatten(), reduction="sum"
            )
        return total / y.shape[0]


class NestedLearner(Learner):
    """Algorithm 1: convex BP from zero messages to convergence (``tol``, at most
    ``max_passes``) at every step, then the gradient of the CRF loss."""

    def __init__(self, *args, max_passes: int = 50, tol: float = 1e-4, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_passes, self.tol = max_passes, tol

    def loss(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> Tensor:
        unary, pairwise = self.model(x)
        kwargs = {"eps": self.eps, "counting": self.counting, "tol": self.tol}
        return crf_loss(self.graph, unary, pairwise, y, max_passes=self.max_passes, **kwargs).mean()


class MessageStore:
    """Per-example messages ``[num_examples, E, 2, K]`` kept across steps (zeros at first)."""

    def __init__(
        self,
        num_examples: int,
        graph: FactorGraph,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (num_examples, graph.num_edges, 2, graph.num_states)
        self.messages = torch.zeros(shape, device=device, dtype=dtype)

    def get(self, index: Tensor) -> Tensor:
        if index.numel() and (index.min() < 0 or index.max() >= len(self.messages)):
            raise ValueError(
                f"example index must lie in 0..{len(self.messages) - 1}, got "
                f"{int(index.min())}..{int(index.max())}"
            )
        return self.messages[index.to(self.messages.device)]

    def put(self, index: Tensor, messages: Tensor) -> None:
        self.messages[index.to(self.messages.device)] = messages.to(self.messages)

    def memory_bytes(self) -> int:
        """``num_examples * E * 2 * K`` numbers: e.g. 4 bytes each in float32."""
        return self.messages.numel() * self.messages.element_size()


class BlendedLearner(Learner):
    """Algorithm 2: one message pass from each example's stored messages, then one gradient
    step; the new messages go back to the store (``num_examples`` rows, see
    :meth:`memory_bytes`)."""

    def __init__(self, *args, num_examples: int, passes: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        device = next(iter(self.model.parameters())).device
        self.store = MessageStore(num_examples, self.graph, device=device)
        self.passes = passes

    def loss(self, x: Tensor, y: Tensor, index: Tensor | None = None) -> Tensor:
        if index is None:
            raise ValueError("the blended learner needs each example's index (its messages)")
        unary, pairwise = self.model(x)
        beliefs = convex_bp(
            self.graph,
            unary.detach(),
            pairwise.detach(),
            eps=self.eps,
            counting=self.counting,
            messages=self.store.get(index),
            max_passes=self.passes,
            tol=0.0,
        )
        self.store.put(index, beliefs.messages)
        loss = _surrogate(beliefs, unary, pairwise) - score(self.graph, unary, pairwise, y)
        return loss.mean()

    def memory_bytes(self) -> int:
        return self.store.memory_bytes()


LEARNERS: dict[str, type[Learner]] = {
    "unary": UnaryLearner,
    "piecewise": PiecewiseLearner,
    "nested": NestedLearner,
    "blended": BlendedLearner,
}
"""Learner name -> class (the benchmark's rows)."""


def fit(
    learner: Learner,
    inputs: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Train ``epochs`` passes over ``(inputs, labels)`` in shuffled batches (seeded), or
    ``max_steps`` steps if fewer; returns each epoch's seconds."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    device = next(iter(learner.model.parameters())).device
    seconds = []
    steps = epochs * -(-len(inputs) // batch_size)
    steps = steps if max_steps is None else min(steps, max_steps)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for _ in range(epochs):
        start = time.perf_counter()
        for index in torch.randperm(len(inputs), generator=generator).split(batch_size):
            if bar.n >= steps:
                break
            loss = learner.step(inputs[index].to(device), labels[index].to(device), index)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update()
        seconds.append(time.perf_counter() - start)
    bar.close()
    return seconds


@torch.no_grad()
def predict(
    model: nn.Module,
    graph: FactorGraph,
    inputs: Tensor,
    *,
    unary_only: bool = False,
    counting: Counting | None = None,
    batch_size: int = 256,
    max_passes: int = 50,
) -> Tensor:
    """``[B, N]`` labellings: max-product decoding of the model's potentials, or each
    variable's best unary state with ``unary_only``."""
    model.eval()
    device = next(iter(model.parameters())).device
    out = []
    for batch in inputs.split(batch_size):
        unary, pairwise = model(batch.to(device))
        if unary_only:
            out.append(unary.argmax(-1))
        else:
            out.append(decode(graph, unary, pairwise, counting=counting, max_passes=max_passes))
    return torch.cat(out).cpu()
