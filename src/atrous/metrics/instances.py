"""COCO instance segmentation metrics (MaskLab, Chen et al., 2018, is scored this way): mask
AP and box AP through pycocotools' ``COCOeval``, so the numbers are COCO's own (101-point
interpolated precision per class, averaged over the classes with ground truth and over the
IoU thresholds 0.50:0.05:0.95; at most 100 detections per image, the best scored).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ._cocoeval import ImageRecords, as_array, encode, evaluate

MASK_THRESHOLD = 0.5
"""A predicted mask given as probabilities covers the pixels at this value or above."""
_KEYS = {  # our name -> (iouType, index into COCOeval.stats)
    "mask_ap": ("segm", 0),
    "mask_ap50": ("segm", 1),
    "mask_ap75": ("segm", 2),
    "mask_aps": ("segm", 3),
    "mask_apm": ("segm", 4),
    "mask_apl": ("segm", 5),
    "box_ap": ("bbox", 0),
    "box_ap50": ("bbox", 1),
    "box_ap75": ("bbox", 2),
}


def _boxes(value: Any, count: int, name: str) -> np.ndarray:
    """``[count, 4]`` XYXY boxes (finite, x2 >= x1, y2 >= y1) as COCO's ``[x, y, w, h]``."""
    boxes = as_array(value, name, np.float64)
    if boxes.size == 0 and count == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.shape != (count, 4):
        raise ValueError(f"{name} must be [{count}, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name} holds non-finite values")
    wh = boxes[:, 2:] - boxes[:, :2]
    if (wh < 0).any():
        first = int(np.flatnonzero((wh < 0).any(axis=1))[0])
        raise ValueError(f"{name}[{first}] = {boxes[first].tolist()} has x2 < x1 or y2 < y1")
    return np.concatenate([boxes[:, :2], wh], axis=1)


def _labels(value: Any, count: int, num_classes: int, name: str) -> np.ndarray:
    """``[count]`` thing labels, integers in 1 .. ``num_classes`` - 1."""
    labels = as_array(value, name, np.float64).reshape(-1)
    if len(labels) != count:
        raise ValueError(f"{name} holds {len(labels)} labels for {count} instances")
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    bad |= (labels < 1) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} holds {labels[bad][0]:g}: labels are integers 1 .. {num_classes - 1} "
            f"(0 is background, num_classes is {num_classes})"
        )
    return labels.astype(np.int64)


def _masks(value: Any, size: tuple[int, int], name: str, count: int | None = None) -> np.ndarray:
    """Boolean masks ``[N, H, W]``; probabilities (floats) cover ``MASK_THRESHOLD`` and up."""
    raw = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all():
            raise ValueError(f"{name} holds non-finite probabilities")
        masks = raw >= MASK_THRESHOLD
    else:
        masks = as_array(raw, name, bool)
    if masks.size == 0 and masks.ndim >= 1 and masks.shape[0] == 0:
        masks = masks.reshape(0, *size)  # no instances: any empty shape will do
    want = (masks.shape[0] if count is None else count, *size)
    if masks.ndim != 3 or masks.shape != want:
        raise ValueError(
            f"{name} must be [{want[0]}, {size[0]}, {size[1]}] (one mask per instance at the "
            f"image's size), got {list(masks.shape)}"
        )
    return masks


def _truth(
    truth: dict[str, Any], size: tuple[int, int], num_classes: int, where: str
) -> list[dict[str, Any]]:
    """One image's ground-truth instances as COCO annotations (no ids yet)."""
    for key in ("labels", "masks", "iscrowd"):
        if key not in truth:
            raise KeyError(f"{where}: truth has no {key!r} (keys: {sorted(truth)})")
    masks = _masks(truth["masks"], size, f"{where}: truth['masks']")
    count = masks.shape[0]
    labels = _labels(truth["labels"], count, num_classes, f"{where}: truth['labels']")
    crowd = as_array(truth["iscrowd"], f"{where}: truth['iscrowd']", bool).reshape(-1)
    if len(crowd) != count:
        raise ValueError(f"{where}: truth holds {count} masks but {len(crowd)} iscrowd flags")
    rles = encode(masks) if count else []
    if truth.get("boxes") is None:  # the masks' own boxes
        boxes = np.asarray(mask_utils.toBbox(rles) if count else np.zeros((0, 4)), np.float64)
    else:
        boxes = _boxes(truth["boxes"], count, f"{where}: truth['boxes']")
    if truth.get("area") is None:
        areas = np.asarray(mask_utils.area(rles) if count else [], np.float64)
    else:
        areas = as_array(truth["area"], f"{where}: truth['area']", np.float64).reshape(-1)
        if len(areas) != count or not (np.isfinite(areas) & (areas >= 0)).all():
            raise ValueError(
                f"{where}: truth['area'] must be {count} finite areas >= 0, got {areas.tolist()}"
            )
    return [
        {
            "category_id": int(labels[i]),
            "segmentation": rles[i],
            "area": float(areas[i]),
            "bbox": boxes[i].tolist(),
            "iscrowd": int(crowd[i]),
        }
        for i in range(count)
    ]


def _predictions(
    predictions: dict[str, Any], size: tuple[int, int], num_classes: int, where: str
) -> list[dict[str, Any]]:
    """One image's predicted instances as COCO results (``segmentation`` None without masks)."""
    for key in ("boxes", "labels", "scores"):
        if key not in predictions:
            raise KeyError(f"{where}: predictions have no {key!r} (keys: {sorted(predictions)})")
    scores = as_array(predictions["scores"], f"{where}: predictions['scores']", np.float64)
    scores = scores.reshape(-1)
    if not np.isfinite(scores).all():
        raise ValueError(f"{where}: predictions['scores'] holds non-finite values")
    count = len(scores)
    boxes = _boxes(predictions["boxes"], count, f"{where}: predictions['boxes']")
    labels = _labels(predictions["labels"], count, num_classes, f"{where}: predictions['labels']")
    rles: list[Any] = [None] * count
    if predictions.get("masks") is not None:
        masks = _masks(predictions["masks"], size, f"{where}: predictions['masks']", count)
        rles = encode(masks) if count else []
    return [
        {
            "category_id": int(labels[i]),
            "score": float(scores[i]),
            "bbox": boxes[i].tolist(),
            "segmentation": rles[i],
        }
        for i in range(count)
    ]


class InstanceAP(ImageRecords):
    """COCO mask AP and box AP over images, through pycocotools.

    ``num_classes`` counts background, as the task's does: label 0 is background and labels
    1 .. ``num_classes`` - 1 are the thing classes (COCO category ids). ``update`` keeps each
    image's instances (masks as RLE); ``compute`` builds an in-memory COCO data set and runs
    ``COCOeval`` twice ("segm", "bbox"). A prediction matched to a crowd region is neither a
    hit nor a false positive, as COCO has it. Image ids are the caller's and must be unique.
    """

    def __init__(self, num_classes: int) -> None:
        if int(num_classes) < 2:
            raise ValueError(
                f"num_classes counts background and at least one thing class, got {num_classes}"
            )
        self.num_classes = int(num_classes)
        super().__init__()

    def update(
        self,
        image_id: int,
        size: tuple[int, int],
        truth: dict[str, Any],
        predictions: dict[str, Any],
    ) -> None:
        """Add one image of ``size`` (H, W): its ground truth ``{"labels": [P] (1 ..),
        "masks": bool [P, H, W], "iscrowd": bool [P], "boxes": [P, 4] (x1, y1, x2, y2 in
        pixels; optional, default the masks' boxes), "area": [P] (optional, default the
        masks')}`` and its ``predictions`` ``{"boxes": [K, 4], "labels": [K], "scores": [K],
        "masks": [K, H, W] bool or probabilities (optional: without them only box AP)}``;
        tensors or arrays."""
        image_id = int(image_id)
        where = f"image {image_id}"
        self._check_new(image_id)
        height, width = (int(n) for n in size)
        if height <= 0 or width <= 0:
            raise ValueError(f"{where}: size must be (height, width) > 0, got {tuple(size)}")
        record = {
            "id": image_id,
            "height": height,
            "width": width,
            "truth": _truth(truth, (height, width), self.num_classes, where),
            "predictions": _predictions(predictions, (height, width), self.num_classes, where),
        }
        self._add(record)

    def compute(self) -> dict[str, Any]:
        """``mask_ap``, ``_ap50``, ``_ap75``, ``_aps``, ``_apm``, ``_apl`` and ``box_ap``,
        ``_ap50``, ``_ap75`` as fractions (0..1); ``images``, ``instances`` (non-crowd ground
        truth) and ``predictions`` counts. An AP with nothing to average (no ground truth, no
        predictions, no instance of that size) is 0.0, not COCO's -1. ``self.summary`` keeps
        COCOeval's printed summaries."""
        images = [{"id": r["id"], "height": r["height"], "width": r["width"]} for r in self.records]
        categories = [{"id": c, "name": str(c)} for c in range(1, self.num_classes)]
        truth, boxes, masks = [], [], []
        for r in self.records:
            for instance in r["truth"]:
                truth.append({**instance, "id": len(truth) + 1, "image_id": r["id"]})
            for p in r["predictions"]:
                common = {"image_id": r["id"], "category_id": p["category_id"], "score": p["score"]}
                boxes.append({**common, "bbox": list(p["bbox"])})
                if p["segmentation"] is not None:
                    masks.append({**common, "segmentation": dict(p["segmentation"])})
        stats, texts = {}, []
        for iou_type, results in (("segm", masks), ("bbox", boxes)):
            fresh = [dict(t) for t in truth]
            stats[iou_type], text = evaluate(
                images, categories, fresh, results, iou_type, "ground-truth instances"
            )
            texts.append(f"{'masks' if iou_type == 'segm' else 'boxes'}:\n{text}")
        self.summary = "".join(texts)
        metrics: dict[str, Any] = {k: stats[t][i] for k, (t, i) in _KEYS.items()}
        metrics["images"] = len(self.records)
        metrics["instances"] = sum(not t["iscrowd"] for t in truth)
        metrics["predictions"] = len(boxes)
        return metrics
