"""Auto-DeepLab's search space as one differentiable supernet (Liu et al., CVPR 2019, Sec. 3):
every cell mixes the 8 operations on each of its 20 edges by ``softmax(alpha)`` (one alpha shared
by all cells), and every node of the 12-layer x 4-level trellis sums the cells of its up to three
incoming transitions weighted by ``beta``, normalised over each source node's outgoing ones.
A simplified ASPP on every level of the last layer (1x1 conv, one 3x3 conv at rate 96 / OS,
image pooling) gives class scores, upsampled and summed. :func:`decode` reads the architecture
out: the Viterbi path through beta, and per block the two strongest inputs (strength: the largest
non-``none`` weight of alpha on the edge) with their strongest operation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .network import OPERATIONS, _bn, _Op

LEVELS = 4  # OS4, OS8, OS16, OS32
BLOCKS = 5


def edges_per_cell(blocks: int = BLOCKS) -> int:
    """Block b reads the two cell inputs and the b blocks before it: 2 + 3 + ... = 20 for 5."""
    return sum(2 + b for b in range(blocks))


class MixedOp(nn.Module):
    """The 8 operations on one edge, summed with the edge's softmax weights (``none`` is zero)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(
            _Op(name, channels, stride) if name != "none" else nn.Identity() for name in OPERATIONS
        )
        self.stride = stride
        for op in self.ops:  # pools carry no learnable scale: a BN without affine, as DARTS
            if isinstance(op, _Op) and op.name.endswith("pool_3x3"):
                op.body = nn.Sequential(op.body, nn.BatchNorm2d(channels, affine=False))

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        out = 0
        for w, name, op in zip(weights, OPERATIONS, self.ops, strict=True):
            if name != "none":
                out = out + w * op(x)
        return out


class SearchCell(nn.Module):
    """A cell of mixed edges: both inputs to ``channels`` (ReLU -> 1x1 conv -> BN), then
    ``blocks`` blocks, each the sum of mixed ops on every earlier state; output the blocks
    concatenated. ``downsample`` strides the edges that read the inputs."""

    def __init__(self, previous: int, before: int, channels: int, *, downsample: bool) -> None:
        super().__init__()
        self.h0 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(previous, channels, 1, bias=False), _bn(channels)
        )
        self.h1 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(before, channels, 1, bias=False), _bn(channels)
        )
        self.edges = nn.ModuleList()
        for b in range(BLOCKS):
            for source in range(2 + b):
                self.edges.append(MixedOp(channels, 2 if downsample and source < 2 else 1))
        self.downsample = downsample
        self.out_channels = BLOCKS * channels

    def forward(self, previous: Tensor, before: Tensor, alpha: Tensor) -> Tensor:
        if before.shape[-2:] != previous.shape[-2:]:
            before = F.interpolate(
                before, size=previous.shape[-2:], mode="bilinear", align_corners=False
            )
        states = [self.h0(previous), self.h1(before)]
        weights = alpha.softmax(-1)
        edge = 0
        for b in range(BLOCKS):
            block = 0
            for source in range(2 + b):
                block = block + self.edges[edge](states[source], weights[edge])
                edge += 1
            states.append(block)
        return torch.cat(states[2:], dim=1)


def _sources(layer: int, level: int) -> list[int]:
    """Levels at layer ``layer - 1`` that can reach ``level`` at ``layer`` (one level at most)."""
    reachable = range(min(layer, LEVELS - 1) + 1) if layer > 0 else [0]  # the stem is at OS4
    return [s for s in (level - 1, level, level + 1) if s in reachable]


def _nearest(levels: list[int], level: int) -> int:
    """``level`` if present, else the closest one (corner nodes have no H^{l-2} at their own
    level; the TF search code is not public, and the PyTorch port reuses the nearest size)."""
    return min(levels, key=lambda s: (abs(s - level), s))


def nodes(layers: int) -> list[list[int]]:
    """The levels present at each layer: layer 0 at OS4 or OS8, then one level deeper at most."""
    return [list(range(min(layer + 1, LEVELS - 1) + 1)) for layer in range(layers)]


class _SearchHead(nn.Module):
    """The search-time ASPP of one level: 1x1 conv, one 3x3 conv at rate 96 / OS, image pooling,
    concatenated, 1x1 + BN + ReLU, then 1x1 to classes."""

    def __init__(self, channels: int, num_classes: int, output_stride: int) -> None:
        super().__init__()
        rate = max(1, 96 // output_stride)

        def block(kernel: int, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, kernel, padding=dilation * (kernel // 2),
                          dilation=dilation, bias=False), _bn(channels), nn.ReLU())  # fmt: skip

        self.branches = nn.ModuleList([block(1), block(3, rate)])
        # no BN on the pooled 1x1 map: with a search batch of 2 its statistics are noise
        self.pool = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU())
        self.project = nn.Sequential(
            nn.Conv2d(3 * channels, channels, 1, bias=False),
            _bn(channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        parts = [b(x) for b in self.branches] + [pooled.expand(-1, -1, *x.shape[-2:])]
        return self.project(torch.cat(parts, dim=1))


class AutoDeepLabSupernet(nn.Module):
    """The whole search space: ``[N,3,H,W]`` -> ``[N,K,H,W]`` logits (``H``, ``W`` multiples of
    32). ``alpha`` ``[20, 8]`` and ``beta`` ``[layers, 4, 3]`` (logits of the transitions down,
    same, up from each node) are the architecture parameters; :meth:`weights` lists the rest."""

    def __init__(self, num_classes: int, *, layers: int = 12, filters: int = 8) -> None:
        super().__init__()
        self.layers, self.filters, self.num_classes = layers, filters, num_classes
        self.stem = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1, bias=False), _bn(64), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, 1, 1, bias=False), _bn(64)),
            nn.Sequential(nn.ReLU(), nn.Conv2d(64, 128, 3, 2, 1, bias=False), _bn(128)),
        ])  # fmt: skip
        width = [BLOCKS * filters * 2**lv for lv in range(LEVELS)]
        self.cells = nn.ModuleDict()
        self.upsample = nn.ModuleDict()  # 2s -> s: bilinear + 1x1 conv (paper Sec. 3.1)
        for layer, levels in enumerate(nodes(layers)):
            for level in levels:
                for source in _sources(layer, level):
                    previous = 128 if layer == 0 else width[source]
                    if layer == 0:
                        before = 64  # the stem's first conv, OS2
                    elif layer == 1:
                        before = 128  # the stem's output, OS4
                    else:  # H^{l-2} at this level, or the nearest level that layer has
                        before = width[_nearest(nodes(layers)[layer - 2], level)]
                    if source > level:
                        key = f"{layer}_{source}_{level}"
                        self.upsample[key] = nn.Sequential(
                            nn.ReLU(),
                            nn.Conv2d(previous, width[level], 1, bias=False),
                            _bn(width[level]),
                        )
                        previous = width[level]
                    self.cells[f"{layer}_{source}_{level}"] = SearchCell(
                        previous, before, filters * 2**level, downsample=source < level
                    )
        self.heads = nn.ModuleList(
            _SearchHead(width[lv], num_classes, 4 * 2**lv) for lv in nodes(layers)[-1]
        )
        generator = torch.Generator().manual_seed(0)
        # paper Sec. 3.3: alpha and beta start as 1e-3 * N(0, 1) before the softmax
        self.alpha = nn.Parameter(
            1e-3 * torch.randn(edges_per_cell(), len(OPERATIONS), generator=generator)
        )
        self.beta = nn.Parameter(1e-3 * torch.randn(layers, LEVELS, 3, generator=generator))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, self.beta]

    def weights(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n not in ("alpha", "beta")]

    def transition_weights(self) -> Tensor:
        """``[layers, 4, 3]``: each node's softmax over its valid outgoing transitions (down,
        same, up), zero where the transition leaves the trellis; the weight of the edge from
        node (l, s) into layer l + 1. Row ``l`` is the transitions *into* layer ``l`` from
        layer ``l - 1`` (row 0: from the stem, which is at OS4)."""
        valid = torch.zeros(self.layers, LEVELS, 3, dtype=torch.bool)
        for layer in range(self.layers):
            sources = [0] if layer == 0 else nodes(self.layers)[layer - 1]
            targets = nodes(self.layers)[layer]
            for s in sources:
                for k, delta in enumerate((-1, 0, 1)):
                    valid[layer, s, k] = (s + delta) in targets
        logits = self.beta.masked_fill(~valid.to(self.beta.device), float("-inf"))
        weights = logits.softmax(-1)
        return torch.nan_to_num(weights, nan=0.0)

    def forward(self, x: Tensor) -> Tensor:
        before = self.stem[0](x)
        first = self.stem[1](before)
        beta = self.transition_weights()
        outputs: dict[int, Tensor] = {0: first}  # level -> node output at the previous layer
        earlier: dict[int, Tensor] = {0: before}
        for layer, levels in enumerate(nodes(self.layers)):
            current: dict[int, Tensor] = {}
            for level in levels:
                total = 0
                for source in _sources(layer, level):
                    previous = outputs[source]
                    key = f"{layer}_{source}_{level}"
                    if source > level:
                        size = (previous.shape[-2] * 2, previous.shape[-1] * 2)
                        previous = self.upsample[key](
                            F.interpolate(previous, size=size, mode="bilinear", align_corners=False)
                        )
                    h2 = earlier[_nearest(list(earlier), level)]
                    weight = beta[layer, source, 1 + level - source]
                    total = total + weight * self.cells[key](previous, h2, self.alpha)
                current[level] = total
            earlier, outputs = outputs, current
        size = x.shape[-2:]
        logits = 0
        for head, level in zip(self.heads, nodes(self.layers)[-1], strict=True):
            scores = head(outputs[level])
            logits = logits + F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
        return logits


def viterbi(weights: Tensor) -> list[int]:
    """The most probable path (levels per layer) under transition ``weights`` ``[L, 4, 3]``
    (:meth:`AutoDeepLabSupernet.transition_weights`), starting from the stem at OS4."""
    weights = weights.detach()
    layers = weights.shape[0]
    score = {0: 0.0}  # log-probability of the best path ending at each level (the stem)
    back: list[dict[int, int]] = []
    for layer in range(layers):
        new, pointers = {}, {}
        for source, value in score.items():
            for k, delta in enumerate((-1, 0, 1)):
                w = float(weights[layer, source, k])
                target = source + delta
                if w <= 0 or not 0 <= target < LEVELS:
                    continue
                candidate = value + math.log(w)
                if candidate > new.get(target, -math.inf):
                    new[target], pointers[target] = candidate, source
        score = new
        back.append(pointers)
    level = max(score, key=score.get)  # type: ignore[arg-type]
    path = [level]
    for pointers in reversed(back[1:]):
        level = pointers[level]
        path.append(level)
    return path[::-1]


def decode_cell(alpha: Tensor) -> dict[str, list[Any]]:
    """Per block, the two inputs with the strongest non-``none`` operation weight, each with
    that operation: ``{"operations": [...], "inputs": [...]}`` as :mod:`.network` reads."""
    weights = alpha.detach().softmax(-1)
    none = OPERATIONS.index("none")
    ops: list[str] = []
    inputs: list[int] = []
    edge = 0
    for b in range(BLOCKS):
        block = weights[edge : edge + 2 + b].clone()
        block[:, none] = -1.0
        strength = block.max(-1).values
        chosen = sorted(torch.topk(strength, 2).indices.tolist())
        for source in chosen:
            inputs.append(int(source))
            ops.append(OPERATIONS[int(block[source].argmax())])
        edge += 2 + b
    return {"operations": ops, "inputs": inputs}


def decode(model: AutoDeepLabSupernet) -> dict[str, Any]:
    """The architecture a supernet holds now (see the module docstring), as
    :func:`atrous.models.auto_deeplab.load_architecture` reads it."""
    with torch.no_grad():
        path = viterbi(model.transition_weights().cpu())
    return {"path": path, "cell": decode_cell(model.alpha.cpu())}
