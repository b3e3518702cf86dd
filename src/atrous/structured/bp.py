"""Convex belief propagation in log space (Hazan & Shashua 2010; Schwing et al. 2011), batched.

It approximates, at temperature ``eps``, the log-partition ``eps log sum_y exp(F(y) / eps)`` of
``F(y) = sum_i unary_i(y_i) + sum_e pairwise_e(y_i, y_j)`` by
``max_{b in local polytope} sum_r <b_r, f_r> + eps (sum_e c_e H(b_e) + sum_i c_i H(b_i))``.
Messages ``lam[b, e, s]`` go from endpoint ``s`` of edge ``e`` to the edge; one pass updates every
variable once, a colour at a time, by block coordinate descent on the dual:

    mu_{e->i}(x_i) = eps c_e log sum_{x_j} exp((f_e(x_i, x_j) + lam_{j->e}(x_j)) / (eps c_e))
    lam_{i->e}(x_i) = c_e / ch_i (f_i(x_i) + sum_{e' at i} mu_{e'->i}(x_i)) - mu_{e->i}(x_i)

with ``ch_i = c_i + sum_{e at i} c_e``. With Bethe counting numbers and ``eps = 1`` this is
sum-product BP (exact on trees); ``eps = 0`` replaces every log-sum-exp by a max (max-product).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .graph import Counting, FactorGraph, default_counting


@dataclass
class Beliefs:
    """What inference returns, per example: ``unary`` ``[B, N, K]`` and ``pairwise``
    ``[B, E, K, K]`` beliefs, ``scores`` ``[B, N, K]`` (``eps log`` of the unnormalised unary
    belief: max-marginals at ``eps = 0``), ``log_z`` ``[B]`` (the primal value at the beliefs:
    the approximate ``eps``-log-partition once converged), ``messages`` ``[B, E, 2, K]``, and the
    number of passes run."""

    unary: Tensor
    pairwise: Tensor
    scores: Tensor
    log_z: Tensor
    messages: Tensor
    passes: int
    converged: bool


class _Plan:
    """Index tensors for one graph on one device: per colour, the (edge, side) slots whose
    variable has that colour."""

    def __init__(self, graph: FactorGraph, counting: Counting, device: torch.device, dtype):
        edges = torch.tensor(graph.edges, dtype=torch.long, device=device).view(-1, 2)
        self.edges = edges
        self.c_edge = counting.edge.to(device, dtype)
        self.c_hat = counting.hat(graph).to(device, dtype)
        self.c_var = counting.var.to(device, dtype)
        self.colours = []
        for members in graph.colours:
            member = torch.zeros(graph.num_vars, dtype=torch.bool, device=device)
            member[list(members)] = True
            slot_e, slot_s = torch.nonzero(member[edges], as_tuple=True)  # [M], [M]
            self.colours.append((slot_e, slot_s, edges[slot_e, slot_s]))
        all_e = torch.arange(len(graph.edges), device=device).repeat_interleave(2)
        all_s = torch.tensor([0, 1], device=device).repeat(len(graph.edges))
        self.all_slots = (all_e, all_s, edges[all_e, all_s] if len(graph.edges) else all_e)


def _incoming(pairwise: Tensor, lam: Tensor, plan: _Plan, slots: tuple, eps: float) -> Tensor:
    """``mu_{e->i}`` ``[B, M, K]`` for the given (edge, side) slots."""
    slot_e, slot_s, _ = slots
    pair = pairwise[:, slot_e]  # [B, M, K, K] rows: x of the other side when side == 1
    pair = torch.where((slot_s == 1).view(1, -1, 1, 1), pair.transpose(-1, -2), pair)
    other = lam[:, slot_e, 1 - slot_s]  # [B, M, K]
    x = pair + other.unsqueeze(-2)  # [B, M, K(own), K(other)]
    if eps == 0.0:
        return x.amax(dim=-1)
    temp = (eps * plan.c_edge[slot_e]).view(1, -1, 1)
    return temp * torch.logsumexp(x / temp.unsqueeze(-1), dim=-1)


def message_pass(unary: Tensor, pairwise: Tensor, lam: Tensor, plan: _Plan, eps: float) -> Tensor:
    """One pass over the colours; returns the new messages (the input is not changed)."""
    lam = lam.clone()
    for slots in plan.colours:
        slot_e, slot_s, var = slots
        if len(slot_e) == 0:
            continue
        mu = _incoming(pairwise, lam, plan, slots, eps)  # [B, M, K]
        total = unary.index_add(1, var, mu)  # f_i + sum mu, for this colour's variables
        weight = (plan.c_edge[slot_e] / plan.c_hat[var]).view(1, -1, 1)
        new = weight * total[:, var] - mu
        lam[:, slot_e, slot_s] = new - new.amax(dim=-1, keepdim=True)  # shift: same beliefs
    return lam


def _entropy_term(logits: Tensor, temp: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Beliefs ``softmax(logits / temp)`` over ``dims`` and their entropies."""
    flat = logits.flatten(start_dim=logits.ndim - len(dims))
    log_b = torch.log_softmax(flat / temp.view(1, -1, 1), dim=-1)
    b = log_b.exp()
    return b.view_as(logits), -(b * log_b).sum(-1)


def beliefs_from_messages(
    unary: Tensor, pairwise: Tensor, lam: Tensor, plan: _Plan, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unary and pairwise beliefs, unary scores, and the primal value, from messages."""
    mu = _incoming(pairwise, lam, plan, plan.all_slots, eps)
    scores = unary.index_add(1, plan.all_slots[2], mu) / plan.c_hat.view(1, -1, 1)
    edge_logits = pairwise + lam[:, :, 0].unsqueeze(-1) + lam[:, :, 1].unsqueeze(-2)
    energy = None
    if eps == 0.0:
        b_var = torch.nn.functional.one_hot(scores.argmax(-1), unary.shape[-1]).to(unary.dtype)
        flat = edge_logits.flatten(start_dim=2)
        b_edge = torch.nn.functional.one_hot(flat.argmax(-1), flat.shape[-1]).to(unary.dtype)
        b_edge = b_edge.view_as(pairwise)
        entropy = torch.zeros(unary.shape[0], dtype=unary.dtype, device=unary.device)
    else:
        b_var, h_var = _entropy_term(scores, torch.full_like(plan.c_hat, eps), (2,))
        b_edge, h_edge = _entropy_term(edge_logits, eps * plan.c_edge, (2, 3))
        entropy = eps * ((h_var * plan.c_var).sum(-1) + (h_edge * plan.c_edge).sum(-1))
    energy = (b_var * unary).sum((1, 2)) + (b_edge * pairwise).sum((1, 2, 3))
    return b_var, b_edge, scores, energy + entropy


def zero_messages(graph: FactorGraph, batch: int, *, device=None, dtype=None) -> Tensor:
    """``[B, E, 2, K]`` zero messages: where inference starts."""
    shape = (batch, graph.num_edges, 2, graph.num_states)
    return torch.zeros(shape, device=device, dtype=dtype or torch.get_default_dtype())


_PLANS: dict[tuple, _Plan] = {}


def plan_for(graph: FactorGraph, counting: Counting | None, device, dtype) -> _Plan:
    """The cached index plan of ``graph`` with ``counting`` (default: Bethe on forests,
    tree-reweighted otherwise) on ``device``."""
    numbers = None if counting is None else (counting.edge.tolist(), counting.var.tolist())
    key = (graph, str(numbers), str(device), dtype)
    if key not in _PLANS:
        counting = counting or default_counting(graph)
        counting.check(graph)
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = _Plan(graph, counting, torch.device(device), dtype)
    return _PLANS[key]


@torch.no_grad()
def convex_bp(
    graph: FactorGraph,
    unary: Tensor,
    pairwise: Tensor,
    *,
    eps: float = 1.0,
    counting: Counting | None = None,
    messages: Tensor | None = None,
    max_passes: int = 100,
    tol: float = 1e-6,
) -> Beliefs:
    """Run convex BP from ``messages`` (default zeros) for at most ``max_passes`` passes, until
    no message moves by more than ``tol``; ``max_passes=1`` is the blended learner's single
    pass. Runs on the potentials' device and dtype; no gradient flows through it."""
    graph.check(unary, pairwise)
    if eps < 0:
        raise ValueError(f"eps (the temperature) must be >= 0, got {eps}")
    plan = plan_for(graph, counting, unary.device, unary.dtype)
    if messages is None:
        messages = zero_messages(graph, unary.shape[0], device=unary.device, dtype=unary.dtype)
    elif messages.shape != (unary.shape[0], graph.num_edges, 2, graph.num_states):
        raise ValueError(
            f"messages must be [B, {graph.num_edges}, 2, {graph.num_states}], got "
            f"{tuple(messages.shape)}"
        )
    messages = messages.to(unary.device, unary.dtype)
    converged, passes = graph.num_edges == 0, 0
    while not converged and passes < max_passes:
        new = message_pass(unary, pairwise, messages, plan, float(eps))
        converged = bool((new - messages).abs().max() <= tol)
        messages, passes = new, passes + 1
    b_var, b_edge, scores, log_z = beliefs_from_messages(unary, pairwise, messages, plan, eps)
    return Beliefs(b_var, b_edge, scores, log_z, messages, passes, converged)


def score(graph: FactorGraph, unary: Tensor, pairwise: Tensor, labels: Tensor) -> Tensor:
    """``F(y)`` ``[B]``: the summed potentials of the labelling ``labels`` ``[B, N]``."""
    graph.check(unary, pairwise)
    graph.check_labels(labels)
    total = unary.gather(2, labels.unsqueeze(-1)).squeeze(-1).sum(1)
    if graph.num_edges:
        edges = torch.tensor(graph.edges, device=labels.device)
        k = graph.num_states
        flat = (labels[:, edges[:, 0]] * k + labels[:, edges[:, 1]]).unsqueeze(-1)
        total = total + pairwise.flatten(start_dim=2).gather(2, flat).squeeze(-1).sum(1)
    return total


def decode(
    graph: FactorGraph,
    unary: Tensor,
    pairwise: Tensor,
    *,
    counting: Counting | None = None,
    max_passes: int = 100,
) -> Tensor:
    """``[B, N]`` labelling from max-product (``eps = 0``) max-marginals: the MAP on a tree."""
    return convex_bp(
        graph, unary, pairwise, eps=0.0, counting=counting, max_passes=max_passes
    ).scores.argmax(-1)
