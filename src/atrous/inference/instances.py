"""Predicted instances (MaskLab's) as files: a picture (masks, boxes, class and score) and a
JSON list with each mask as COCO compressed RLE.

Instances are one dict of per-instance fields: ``{"boxes": [K, 4] (x1, y1, x2, y2 in pixels),
"labels": [K] (1 ..), "scores": [K], "masks": [K, H, W] bool or probabilities}``, tensors or
arrays; ``classes[label]`` names a label (``classes[0]`` is background).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils

from ..metrics.instances import MASK_THRESHOLD
from .people import FILL_ALPHA, _as_array, _colour, _font, _outline, _shade

MIN_SCORE = 0.5
"""Instances scoring below this are not drawn (the JSON keeps them all: AP ranks them)."""


def _parts(
    instances: dict[str, Any], classes: Sequence[str], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``[K, 4]``, labels ``[K]``, scores ``[K]`` and boolean masks ``[K, H, W]``,
    checked against each other, the image ``size`` (default the masks') and the ``classes``."""
    for key in ("boxes", "labels", "scores", "masks"):
        if key not in instances:
            raise KeyError(f"instances have no {key!r} (keys: {sorted(instances)})")
    scores = _as_array(instances["scores"], np.float64).reshape(-1)
    count = len(scores)
    boxes = _as_array(instances["boxes"], np.float64)
    boxes = boxes if boxes.size or count else boxes.reshape(0, 4)
    labels = _as_array(instances["labels"], np.int64).reshape(-1)
    raw = _as_array(instances["masks"], None)
    masks = raw >= MASK_THRESHOLD if raw.dtype.kind == "f" else raw.astype(bool)
    if size is None:
        if masks.ndim != 3:
            raise ValueError(f"instances['masks'] must be [K, H, W], got {list(masks.shape)}")
        size = masks.shape[1:]
    elif not count and not masks.size:  # no instances: any empty shape will do
        masks = masks.reshape(0, *size)
    if boxes.shape != (count, 4) or len(labels) != count or masks.shape != (count, *size):
        raise ValueError(
            f"instances must hold boxes [K, 4], labels [K], scores [K] and masks [K, "
            f"{size[0]}, {size[1]}] (the image's size), got boxes {list(boxes.shape)}, labels "
            f"{list(labels.shape)}, scores {list(scores.shape)}, masks {list(masks.shape)}"
        )
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError("instances hold non-finite boxes or scores")
    if ((labels < 0) | (labels >= len(classes))).any():
        raise ValueError(
            f"labels {sorted(set(labels.tolist()))} go past the {len(classes)} classes"
        )
    return boxes, labels, scores, masks


def _tag(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    text: str,
    colour: np.ndarray,
    box: np.ndarray,
    size: tuple[int, int],
) -> None:
    """``text`` on a patch of the instance's colour at the box's top left corner: above the
    box where there is room, else just inside it; always inside the image."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    w, h = x1 - x0 + 2, y1 - y0 + 2
    width, height = size
    x = min(max(0.0, float(box[0])), max(0.0, width - w))
    top = float(box[1])
    y = top - h if top - h >= 0 else min(max(0.0, top), max(0.0, height - h))
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=_shade(colour, "centre"))
    ink = (0, 0, 0) if colour @ (0.299, 0.587, 0.114) > 140 else (255, 255, 255)
    draw.text((x + 1 - x0, y + 1 - y0), text, fill=ink, font=font)


def draw_instances(
    image: np.ndarray,
    instances: dict[str, Any],
    classes: Sequence[str],
    *,
    min_score: float = MIN_SCORE,
) -> np.ndarray:
    """The ``HxWx3`` uint8 image with each instance scoring ``min_score`` or more in its own
    colour (golden-ratio hues in the given order, so neighbours differ): mask tinted and
    outlined, box drawn, ``"<class> <score>"`` at the box's corner. The best is drawn last."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_instances needs an HxWx3 uint8 image, got {list(image.shape)}")
    height, width = image.shape[:2]
    boxes, labels, scores, masks = _parts(instances, classes, (height, width))
    shown = sorted(np.flatnonzero(scores >= min_score).tolist(), key=lambda i: scores[i])
    canvas = image.astype(np.float64)
    line = max(1, round(max(height, width) / 280))
    for i in shown:  # tint and outline every mask first: boxes and text go on top
        colour = _colour(i)
        canvas[masks[i]] = (1 - FILL_ALPHA) * canvas[masks[i]] + FILL_ALPHA * colour
        canvas[_outline(masks[i], line)] = colour
    picture = Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = _font(max(10, round(max(height, width) / 45)))
    for i in shown:
        colour = _colour(i)
        x1, y1, x2, y2 = boxes[i]
        corners = (x1, y1, max(x1, x2 - 1), max(y1, y2 - 1))  # PIL's ends are inclusive
        draw.rectangle(corners, outline=_shade(colour, "centre"), width=line)
        _tag(draw, font, f"{classes[labels[i]]} {scores[i]:.2f}", colour, boxes[i], (width, height))
    return np.asarray(picture)


def _short(value: float) -> float:
    return float(f"{float(value):.6g}")


def instances_json(
    instances: dict[str, Any], classes: Sequence[str], *, min_score: float = 0.0
) -> list[dict[str, Any]]:
    """The instances scoring ``min_score`` or more, in the given order, each ``{"label",
    "class", "score", "box" (x1, y1, x2, y2), "segmentation" (COCO compressed RLE, counts as
    text: ``pycocotools.mask.decode`` reads it), "area" (mask pixels)}``."""
    boxes, labels, scores, masks = _parts(instances, classes)
    height, width = masks.shape[1:]
    out = []
    for i in np.flatnonzero(scores >= min_score):
        rle = mask_utils.encode(np.asfortranarray(masks[i].astype(np.uint8)))
        out.append(
            {
                "label": int(labels[i]),
                "class": str(classes[labels[i]]),
                "score": _short(scores[i]),
                "box": [round(float(v), 2) for v in boxes[i]],
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
                "area": int(mask_utils.area(rle)),
            }
        )
    return out


def save_instances(
    image: np.ndarray,
    instances: dict[str, Any],
    out_dir: str | Path,
    stem: str,
    classes: Sequence[str],
    *,
    min_score: float = MIN_SCORE,
) -> list[Path]:
    """Write ``<stem>_instances.jpg`` (:func:`draw_instances`, down to ``min_score``) and
    ``<stem>_instances.json`` (``{"image": stem, "height", "width", "instances":``
    :func:`instances_json` ``}``, every instance); return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = draw_instances(image, instances, classes, min_score=min_score)
    jpg = out_dir / f"{stem}_instances.jpg"
    Image.fromarray(picture).save(jpg, quality=90)
    height, width = picture.shape[:2]
    body = {"image": stem, "height": height, "width": width}
    body["instances"] = instances_json(instances, classes)
    path = out_dir / f"{stem}_instances.json"
    path.write_text(json.dumps(body) + "\n")
    return [jpg, path]
