"""``atrous search``: Auto-DeepLab's architecture search (Liu et al., CVPR 2019, Sec. 3.3), first
order: the training split is cut into two disjoint halves; each step updates the supernet's
weights on a batch of the first (SGD, cosine LR) and, from ``search.arch_start`` on, alpha and
beta on a batch of the second (Adam). Writes ``architecture.json`` (what
``auto_deeplab(architecture=...)`` and ``model.architecture`` read), ``search_path.png`` (the
trellis, edge width by beta, the decoded path drawn over it) and ``search_log.jsonl``.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..config import Config
from ..data import build_dataset, train_transforms
from ..inference import resolve_device
from ..models.align import crop_to, pad_to_exact
from ..models.auto_deeplab.search import LEVELS, AutoDeepLabSupernet, decode, nodes
from ..tasks.losses import segmentation_loss
from .sampler import SeededItems, StepSampler

ARCHITECTURE_NAME = "architecture.json"


def _halves(size: int, seed: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves of ``range(size)`` (a seeded shuffle, split in the middle)."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[: size // 2]), sorted(order[size // 2 :])


def _stream(dataset: Any, indices: list[int], batch: int, seed: int) -> Any:
    subset = Subset(dataset, indices)
    loader = DataLoader(
        SeededItems(subset), batch_size=batch, sampler=StepSampler(len(subset), seed),
        num_workers=0, generator=torch.Generator(),
    )  # fmt: skip
    return iter(loader)


def _loss(model: AutoDeepLabSupernet, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    logits = crop_to(model(pad_to_exact(images, 32)), h, w)  # the supernet needs multiples of 32
    return segmentation_loss(logits, masks)


def search(cfg: Config, *, progress: bool = True) -> dict[str, Any]:
    """Run the search ``cfg.search`` describes on ``cfg.data``'s training split; returns
    ``{"architecture": dict, "path": Path, "picture": Path, "seconds": float,
    "peak_memory_mb": float}``."""
    s, d = cfg.search, cfg.data
    torch.manual_seed(s.seed)
    device = resolve_device(cfg.train.device)
    options = {} if d.num_classes is None else {"num_classes": d.num_classes}
    if d.dataset == "folder":
        options["val_fraction"] = d.val_fraction
    transforms = train_transforms(
        d.crop_size, mean=d.mean, std=d.std, scale_range=d.scale_range,
        scale_step=d.scale_step, hflip=d.hflip,
    )  # fmt: skip
    data = build_dataset(d.dataset, d.root, d.train_split, transforms, **options)
    first, second = _halves(len(data), s.seed)
    weights_batches = _stream(data, first, s.batch_size, s.seed)
    arch_batches = _stream(data, second, s.batch_size, s.seed + 1)
    model = AutoDeepLabSupernet(data.num_classes, layers=s.layers, filters=s.filters).to(device)
    sgd = torch.optim.SGD(model.weights(), lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, s.steps, eta_min=s.min_lr)
    adam = torch.optim.Adam(
        model.arch_parameters(), lr=s.arch_lr, betas=(0.5, 0.999), weight_decay=s.arch_weight_decay
    )
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "search_log.jsonl").open("w")
    arch_start = int(round(s.arch_start * s.steps))
    start = time.perf_counter()
    bar = tqdm(range(s.steps), desc="search", unit="step", disable=not progress)
    model.train()
    for step in bar:
        images, masks = (t.to(device) for t in next(weights_batches))
        sgd.zero_grad(set_to_none=True)
        loss = _loss(model, images, masks)
        loss.backward()
        sgd.step()
        cosine.step()
        arch_loss = None
        if step >= arch_start:  # alpha/beta only after the warm-up (paper: after epoch 20)
            images, masks = (t.to(device) for t in next(arch_batches))
            adam.zero_grad(set_to_none=True)
            weights = model.weights()
            for p in weights:  # no weight gradients in the architecture step: a cheaper backward
                p.requires_grad_(False)
            arch = _loss(model, images, masks)
            arch.backward()
            for p in weights:
                p.requires_grad_(True)
            adam.step()
            arch_loss = arch.item()
        found = decode(model)
        bar.set_postfix(loss=f"{loss.item():.3f}", path="".join(map(str, found["path"])))
        record = {"step": step + 1, "loss": loss.item(), "arch_loss": arch_loss, **found}
        log.write(json.dumps(record) + "\n")
    log.close()
    found = decode(model)
    path = out / ARCHITECTURE_NAME
    path.write_text(json.dumps(found, indent=1) + "\n")
    picture = out / "search_path.png"
    Image.fromarray(draw_trellis(model.transition_weights().detach().cpu(), found["path"])).save(
        picture
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    return {
        "architecture": found,
        "path": path,
        "picture": picture,
        "seconds": time.perf_counter() - start,
        "peak_memory_mb": peak,
    }


def draw_trellis(weights: torch.Tensor, path: list[int], cell: int = 60) -> np.ndarray:
    """A picture of the search space: layers left to right, output stride 4 (top) to 32, every
    transition a grey line as wide as its beta weight, the decoded ``path`` in red."""
    layers = weights.shape[0]
    width, height = (layers + 1) * cell + 60, LEVELS * cell + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def at(layer: int, level: int) -> tuple[int, int]:  # layer -1 is the stem
        return (60 + (layer + 1) * cell, 20 + level * cell)

    for layer in range(layers):
        sources = [0] if layer == 0 else nodes(layers)[layer - 1]
        for source in sources:
            for k, delta in enumerate((-1, 0, 1)):
                w = float(weights[layer, source, k])
                if w > 0:
                    draw.line([at(layer - 1, source), at(layer, source + delta)],
                              fill=(150, 150, 150), width=max(1, round(8 * w)))  # fmt: skip
    route = [at(-1, 0)] + [at(layer, level) for layer, level in enumerate(path)]
    draw.line(route, fill=(220, 30, 30), width=3)
    for layer in range(-1, layers):
        for level in [0] if layer == -1 else nodes(layers)[layer]:
            x, y = at(layer, level)
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(40, 40, 40))
    for level in range(LEVELS):
        draw.text((4, 14 + level * cell), f"OS{4 * 2**level}", fill=(0, 0, 0))
    draw.text((at(-1, 0)[0] - 12, height - 16), "stem", fill=(0, 0, 0))
    return np.asarray(image)


def search_memory(
    num_classes: int, size: int, *, layers: int = 12, filters: int = 8, batch: int = 2
) -> float:
    """Peak resident memory (MiB) of this process after one forward + backward of the
    supernet at ``size`` x ``size`` (run it in a fresh process to measure one size alone)."""
    model = AutoDeepLabSupernet(num_classes, layers=layers, filters=filters)
    x = torch.randn(batch, 3, size, size)
    target = torch.randint(0, num_classes, (batch, size, size))
    _loss(model, x, target).backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


__all__ = ["ARCHITECTURE_NAME", "draw_trellis", "search", "search_memory"]
