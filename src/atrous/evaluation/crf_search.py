"""The DeepLab v1/v2 cross-validation of the dense CRF's appearance kernel (v2 Sec. 4.1: w1,
theta_alpha and theta_beta searched on 100 VOC val images, :data:`atrous.refine.GRID`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence, Sized

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..metrics import ConfusionMatrix
from ..refine import GRID, CRFParams, dense_crf


def crf_grid_search(
    samples: Iterable[tuple[np.ndarray | Tensor, np.ndarray | Tensor, np.ndarray | Tensor]],
    num_classes: int,
    *,
    grid: dict[str, Sequence[float]] | None = None,
    ignore_index: int = 255,
    backend: str = "auto",
    progress: bool = True,
    **fixed: float,
) -> list[dict[str, float]]:
    """Search the appearance kernel on a validation subset, as DeepLab v1/v2 did: run the CRF
    with every combination in ``grid`` (default :data:`GRID`) on each ``(image, probs, label)``
    and return one ``{params..., "miou": ...}`` per combination, best first. ``fixed`` sets the
    other parameters (e.g. ``iterations=5`` for a faster search). ``samples`` may be a
    generator: one sample is held at a time."""

    grid = dict(GRID if grid is None else grid)
    unknown = set(grid) | set(fixed)
    unknown -= {f for f in CRFParams.__dataclass_fields__}
    if unknown:
        raise ValueError(f"unknown CRF parameters {sorted(unknown)}")
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    matrices = [ConfusionMatrix(num_classes, ignore_index=ignore_index) for _ in combos]
    total = len(samples) * len(combos) if isinstance(samples, Sized) else None
    bar = tqdm(total=total, desc="CRF grid", disable=not progress)
    count = 0
    for image, probs, label in samples:
        target = torch.as_tensor(np.asarray(label)).long()
        for values, matrix in zip(combos, matrices, strict=True):
            kwargs = {**fixed, **dict(zip(names, values, strict=True))}
            refined = dense_crf(image, probs, backend=backend, **kwargs)
            matrix.update(torch.as_tensor(refined).argmax(0).cpu(), target)
            bar.update()
        count += 1
    bar.close()
    if not count:
        raise ValueError("crf_grid_search needs at least one (image, probs, label) sample")
    results = [
        {**dict(zip(names, values, strict=True)), "miou": matrix.compute()["miou"]}
        for values, matrix in zip(combos, matrices, strict=True)
    ]
    return sorted(results, key=lambda r: -r["miou"])
