"""Pairwise factor graphs over discrete variables: which variable pairs carry a pairwise factor,
their counting numbers, and a colouring of the variables that lets belief propagation update
every variable of one colour at once (no two neighbours share a colour, so the parallel update
equals the sequential one).

Potentials travel beside the graph as tensors, batched over examples: unary ``[B, N, K]`` and
pairwise ``[B, E, K, K]``, where ``pairwise[b, e, s, t]`` scores ``x_i = s, x_j = t`` for
``edges[e] = (i, j)``. Every variable has the same number of states ``K``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import Tensor


@dataclass(frozen=True)
class FactorGraph:
    """``num_vars`` variables of ``num_states`` states with a pairwise factor on each edge."""

    num_vars: int
    num_states: int
    edges: tuple[tuple[int, int], ...]
    colours: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_vars < 1 or self.num_states < 2:
            raise ValueError(
                f"a factor graph needs >= 1 variable and >= 2 states, got {self.num_vars} "
                f"variables of {self.num_states} states"
            )
        seen: set[tuple[int, int]] = set()
        for i, j in self.edges:
            if not (0 <= i < self.num_vars and 0 <= j < self.num_vars) or i == j:
                raise ValueError(
                    f"edge ({i}, {j}) must join two different variables in 0..{self.num_vars - 1}"
                )
            if (min(i, j), max(i, j)) in seen:
                raise ValueError(f"edge ({i}, {j}) appears twice")
            seen.add((min(i, j), max(i, j)))
        object.__setattr__(self, "colours", _greedy_colouring(self.num_vars, self.edges))

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def neighbours(self) -> list[list[int]]:
        """Each variable's neighbours."""
        out: list[list[int]] = [[] for _ in range(self.num_vars)]
        for i, j in self.edges:
            out[i].append(j)
            out[j].append(i)
        return out

    def degrees(self) -> Tensor:
        """``[N]`` number of edges at each variable."""
        return torch.tensor([len(n) for n in self.neighbours()], dtype=torch.float64)

    def is_forest(self) -> bool:
        """True when the graph has no cycle (then Bethe counting numbers make BP exact)."""
        return all(_spanning_forest(self.num_vars, self.edges, range(self.num_edges)))

    def check(self, unary: Tensor, pairwise: Tensor) -> None:
        """Raise a ValueError naming the shape when potentials do not fit this graph."""
        n, k, e = self.num_vars, self.num_states, self.num_edges
        if unary.ndim != 3 or tuple(unary.shape[1:]) != (n, k):
            raise ValueError(f"unary potentials must be [B, {n}, {k}], got {tuple(unary.shape)}")
        if pairwise.ndim != 4 or tuple(pairwise.shape[1:]) != (e, k, k):
            raise ValueError(
                f"pairwise potentials must be [B, {e}, {k}, {k}], got {tuple(pairwise.shape)}"
            )
        if pairwise.shape[0] != unary.shape[0]:
            raise ValueError(
                f"unary and pairwise batch sizes differ: {unary.shape[0]} vs {pairwise.shape[0]}"
            )

    def check_labels(self, labels: Tensor) -> None:
        """Raise a ValueError when labels are not ``[B, N]`` integers in ``0..K-1``."""
        if labels.ndim != 2 or labels.shape[1] != self.num_vars:
            raise ValueError(f"labels must be [B, {self.num_vars}], got {tuple(labels.shape)}")
        if labels.is_floating_point():
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_states):
            raise ValueError(
                f"labels must lie in 0..{self.num_states - 1}, got "
                f"{int(labels.min())}..{int(labels.max())}"
            )


def _spanning_forest(num_vars: int, edges, order) -> list[bool]:
    """Kruskal: which edges, taken in ``order``, join two components (union-find)."""
    parent = list(range(num_vars))

    def root(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    kept = [False] * len(edges)
    for e in order:
        ri, rj = root(edges[e][0]), root(edges[e][1])
        if ri != rj:
            parent[ri] = rj
            kept[e] = True
    return kept


def _greedy_colouring(num_vars: int, edges: tuple[tuple[int, int], ...]) -> tuple:
    """Colour classes (largest-degree first): variables of one class share no edge."""
    nbrs: list[set[int]] = [set() for _ in range(num_vars)]
    for i, j in edges:
        nbrs[i].add(j)
        nbrs[j].add(i)
    colour: dict[int, int] = {}
    for v in sorted(range(num_vars), key=lambda v: (-len(nbrs[v]), v)):
        used = {colour[u] for u in nbrs[v] if u in colour}
        colour[v] = next(c for c in range(num_vars) if c not in used)
    classes = [tuple(v for v in range(num_vars) if colour[v] == c) for c in set(colour.values())]
    return tuple(sorted(classes))


def chain(length: int, num_states: int) -> FactorGraph:
    """A chain ``0 - 1 - ... - length-1`` (a word: one letter-pair factor per neighbours)."""
    return FactorGraph(length, num_states, tuple((i, i + 1) for i in range(length - 1)))


def tree(parents: list[int], num_states: int) -> FactorGraph:
    """A tree from each variable's parent (``-1`` for a root): edges ``(parent, child)``."""
    edges = tuple((p, c) for c, p in enumerate(parents) if p >= 0)
    graph = FactorGraph(len(parents), num_states, edges)
    if not graph.is_forest():
        raise ValueError(f"parents {parents} contain a cycle")
    return graph


def grid(height: int, width: int, num_states: int) -> FactorGraph:
    """A 4-connected ``height x width`` grid, variables numbered row by row."""
    edges = [(r * width + c, r * width + c + 1) for r in range(height) for c in range(width - 1)]
    edges += [(r * width + c, (r + 1) * width + c) for r in range(height - 1) for c in range(width)]
    return FactorGraph(height * width, num_states, tuple(edges))


def fully_connected(num_vars: int, num_states: int) -> FactorGraph:
    """A pairwise factor on every pair of variables (tags: one 2x2 table per tag pair)."""
    return FactorGraph(num_vars, num_states, tuple(combinations(range(num_vars), 2)))


@dataclass(frozen=True)
class Counting:
    """Counting numbers: ``edge[e]`` weighs the entropy of edge ``e``'s belief, ``var[i]``
    that of variable ``i``'s; the approximate entropy is ``sum c_e H(b_e) + sum c_i H(b_i)``."""

    edge: Tensor
    var: Tensor

    def hat(self, graph: FactorGraph) -> Tensor:
        """``c_i + sum_{e at i} c_e``, the weight of a variable's own update."""
        out = self.var.clone()
        for e, (i, j) in enumerate(graph.edges):
            out[i] += self.edge[e]
            out[j] += self.edge[e]
        return out

    def check(self, graph: FactorGraph) -> None:
        """Convex BP needs ``c_e > 0`` and ``c_i + sum c_e > 0``; a ValueError says which."""
        if self.edge.shape != (graph.num_edges,) or self.var.shape != (graph.num_vars,):
            raise ValueError(
                f"counting numbers must be edge [{graph.num_edges}] and var [{graph.num_vars}], "
                f"got {tuple(self.edge.shape)} and {tuple(self.var.shape)}"
            )
        if graph.num_edges and self.edge.min() <= 0:
            raise ValueError(f"edge counting numbers must be > 0, got min {self.edge.min():.3g}")
        hat = self.hat(graph)
        if hat.min() <= 0:
            raise ValueError(
                f"c_i + sum of edge counting numbers must be > 0, variable "
                f"{int(hat.argmin())} has {float(hat.min()):.3g}"
            )


def bethe_counting(graph: FactorGraph) -> Counting:
    """Bethe counting numbers (``c_e = 1``, ``c_i = 1 - degree``): exact on trees; not convex
    on graphs with cycles."""
    edge = torch.ones(graph.num_edges, dtype=torch.float64)
    return Counting(edge, 1 - graph.degrees())


def trw_counting(graph: FactorGraph, *, trees: int = 200, seed: int = 0) -> Counting:
    """Tree-reweighted counting numbers: ``c_e`` = how often edge ``e`` is in ``trees`` random
    spanning trees (a convex combination of trees), ``c_i = 1 - sum c_e``. The entropy is then
    concave and the approximate log-partition an upper bound (Wainwright, Jaakkola & Willsky
    2005); on a tree it equals Bethe's."""
    if graph.is_forest():
        return bethe_counting(graph)
    generator = torch.Generator().manual_seed(seed)
    counts = torch.zeros(graph.num_edges, dtype=torch.float64)
    for _ in range(trees):  # a random edge order gives a random spanning tree
        order = torch.randperm(graph.num_edges, generator=generator).tolist()
        counts += torch.tensor(_spanning_forest(graph.num_vars, graph.edges, order))
    edge = counts / trees
    if edge.min() <= 0:  # an edge no sampled tree used: give it a sliver, keep the sum
        edge = edge.clamp(min=1e-3)
    var = 1 - Counting(edge, torch.zeros(graph.num_vars, dtype=torch.float64)).hat(graph)
    return Counting(edge, var)


def uniform_counting(graph: FactorGraph, value: float = 1.0) -> Counting:
    """Every counting number ``value`` (> 0: a concave entropy, convex BP converges)."""
    return Counting(
        torch.full((graph.num_edges,), value, dtype=torch.float64),
        torch.full((graph.num_vars,), value, dtype=torch.float64),
    )


def default_counting(graph: FactorGraph) -> Counting:
    """Bethe on forests (exact), tree-reweighted otherwise (convex, an upper bound)."""
    return bethe_counting(graph) if graph.is_forest() else trw_counting(graph)
