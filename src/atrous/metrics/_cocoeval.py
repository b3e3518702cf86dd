"""The pycocotools plumbing that COCO-style accumulators share: inputs as arrays, masks as
RLE, images kept as records (merged and gathered across processes), and one ``COCOeval`` run
on an in-memory data set whose numbers come back with COCO's -1 ("nothing to average") as 0.0.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

STATS = 12
"""How many numbers ``COCOeval.stats`` holds for "segm" and "bbox" (10 for "keypoints")."""


def as_array(value: Any, name: str, dtype: type) -> np.ndarray:
    """``value`` (a tensor or anything array-like) as a numpy array of ``dtype``."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of {dtype.__name__}: {error}") from None


def encode(masks: np.ndarray) -> list[dict[str, Any]]:
    """COCO's compressed RLE of boolean masks ``[N, H, W]`` (pycocotools wants ``[H, W, N]``
    uint8 in Fortran order)."""
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def evaluate(
    images: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    truth: list[dict[str, Any]],
    results: list[dict[str, Any]],
    iou_type: str,
    nothing: str = "ground truth",
) -> tuple[list[float], str]:
    """COCOeval's ``stats`` (-1 as 0.0) and its printed summary, for ``truth`` annotations (with
    ids) and ``results`` of one ``iou_type``. Both lists are read, not kept: loadRes writes into
    its input, so pass fresh dicts. With no ``truth`` or no results every number is 0.0 and
    the summary says which was missing (``nothing`` names the ground truth)."""
    if not truth or not results:
        missing = nothing if not truth else "predictions"
        return [0.0] * STATS, f"no {missing}: every {iou_type} AP is 0.0\n"
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        gt = COCO()
        gt.dataset = {"images": images, "annotations": truth, "categories": categories}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.summarize()
    return [max(float(s), 0.0) for s in evaluation.stats], summary.getvalue()


_Self = TypeVar("_Self", bound="ImageRecords")


class ImageRecords:
    """An accumulator of per-image records (dicts with a unique ``"id"``): ``reset``,
    ``merge`` and ``all_reduce``; subclasses turn records into numbers in ``compute``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.summary = ""
        self._ids: set[int] = set()

    def _check_new(self, image_id: int) -> None:
        if image_id in self._ids:
            raise ValueError(f"image {image_id} was added twice: image ids must be unique")

    def _add(self, record: dict[str, Any]) -> None:
        self._check_new(record["id"])
        self.records.append(record)
        self._ids.add(record["id"])

    def merge(self: _Self, other: _Self) -> _Self:
        """Add another accumulator's images (e.g. another process's); ids must not repeat."""
        shared = self._ids & other._ids
        if shared:
            raise ValueError(f"cannot merge: both accumulators hold images {sorted(shared)[:5]}")
        self.records.extend(other.records)
        self._ids |= other._ids
        return self

    def all_reduce(self, device: torch.device) -> None:
        """Gather every process's images into each (a no-op when torch.distributed is not
        initialised); under NCCL the exchange goes through ``device``."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        gathered: list[Any] = [None] * dist.get_world_size()
        device = torch.device(device)
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            dist.all_gather_object(gathered, self.records)
        records = [record for part in gathered for record in part]
        ids = [record["id"] for record in records]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"images {twice} were evaluated by more than one process")
        self.records, self._ids = records, set(ids)
