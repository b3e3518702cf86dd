"""Seeded scenes of filled shapes in the COCO instances layout, for the MaskLab demo and tests:
``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/*.png``, read back by
:class:`~atrous.data.instances.COCOInstances`.

Each scene has a few disks, boxes and triangles (about 14-50 px across on a 128 px image) on
the textured, cluttered background of :mod:`atrous.data.synthetic`. What MaskLab claims to fix
(Chen et al. 2018: semantic segmentation plus direction features split instances of one class)
is built in: about half the objects are placed against an earlier object of the same class,
touching it or partly in front of it, and every object of a class wears the class's colour,
shaded by at most +-20 per object, with pixel noise, so the semantic map alone cannot tell
where one touching instance ends and the next begins. Later objects are drawn in front; masks
are the visible parts (disjoint), and objects with fewer than ``MIN_PIXELS`` visible pixels
are left unannotated. Segmentations are compressed RLEs, ``iscrowd`` is 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from .synthetic import _EQUAL_AREA, COLOURS, _background, _clutter, _shape

CLASSES = ("disk", "box", "triangle")
"""The shape classes, labels 1, 2, 3 (COCO category ids 1, 2, 3)."""
BASE_COLOURS = COLOURS[:3].astype(np.float64)
"""Each class's colour (also worn by the background clutter)."""
SHADE = 20.0
"""Largest per-object brightness change from the class colour."""
NOISE = 8.0
"""Standard deviation of the per-pixel colour noise on objects."""
NEAR_P = 0.5
"""How often an object is placed against an earlier object of the same class."""
MIN_PIXELS = 20
"""Objects with fewer visible pixels are not annotated."""
_OUTLINE = {"disk": None, "box": "square", "triangle": "triangle"}


def _grow(mask: np.ndarray) -> np.ndarray:
    """``mask`` dilated by one pixel (3x3 neighbourhood)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    wide = out.copy()
    out[:, 1:] |= wide[:, :-1]
    out[:, :-1] |= wide[:, 1:]
    return out


def touching_pairs(
    masks: np.ndarray | torch.Tensor, labels: Sequence[int] | torch.Tensor
) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of same-label instances whose masks (bool ``[P, H, W]``)
    touch or overlap: mask ``i`` dilated by one pixel meets mask ``j``."""
    masks = np.asarray(masks, dtype=bool)
    labels = [int(v) for v in labels]
    grown = [_grow(m) for m in masks]
    return [
        (i, j)
        for i in range(len(masks))
        for j in range(i + 1, len(masks))
        if labels[i] == labels[j] and (grown[i] & masks[j]).any()
    ]


def _silhouette(
    kind: str, cx: float, cy: float, r: float, angle: float, h: int, w: int
) -> np.ndarray:
    """The bool ``HxW`` region of a shape of disk-equivalent radius ``r`` centred at
    ``(cx, cy)``."""
    region = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(region)
    if _OUTLINE[kind] is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        outline = _OUTLINE[kind]
        draw.polygon(_shape(outline, cx, cy, r * _EQUAL_AREA[outline], angle), fill=1)
    return np.asarray(region, dtype=bool)


def _place(rng: np.random.Generator, placed: list, h: int, w: int, unit: float):
    """A new object ``(label, silhouette, centre, radius)``: against an earlier one of its class
    with probability ``NEAR_P`` (moved closer until they touch), else anywhere."""
    r = rng.uniform(7, 25) * unit
    angle = rng.uniform(0, 2 * math.pi)
    if placed and rng.random() < NEAR_P:
        label, other, (ox, oy), other_r = placed[int(rng.integers(len(placed)))]
        direction = rng.uniform(0, 2 * math.pi)
        distance = (r + other_r) * rng.uniform(0.6, 1.05)
        grown = _grow(other)
        for _ in range(12):
            cx, cy = ox + distance * math.cos(direction), oy + distance * math.sin(direction)
            inside = _silhouette(CLASSES[label - 1], cx, cy, r, angle, h, w)
            if (inside & grown).any():
                break
            distance *= 0.85
    else:
        label = int(rng.integers(1, len(CLASSES) + 1))
        cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
        inside = _silhouette(CLASSES[label - 1], cx, cy, r, angle, h, w)
    return label, inside, (cx, cy), r


def _scene(rng: np.random.Generator, h: int, w: int, max_objects: int):
    """One image (``HxWx3`` uint8) and its annotated objects as ``(label, visible mask)``,
    back to front."""
    canvas = Image.fromarray(np.clip(_background(rng, h, w), 0, 255).astype(np.uint8))
    _clutter(rng, ImageDraw.Draw(canvas), h, w)
    image = np.asarray(canvas, dtype=np.float64).copy()
    unit = min(h, w) / 128
    placed: list = []
    for _ in range(int(rng.integers(min(2, max_objects), max_objects + 1))):
        label, inside, centre, r = _place(rng, placed, h, w, unit)
        if not inside.any():
            continue
        colour = BASE_COLOURS[label - 1] + rng.uniform(-SHADE, SHADE)
        image[inside] = colour + rng.normal(0, NOISE, size=(int(inside.sum()), 3))
        placed.append((label, inside, centre, r))
    objects = []
    front = np.zeros((h, w), dtype=bool)  # everything drawn after (in front of) this object
    for label, inside, _, _ in reversed(placed):
        visible = inside & ~front
        front |= inside
        if visible.sum() >= MIN_PIXELS:
            objects.append((label, visible))
    return np.clip(image, 0, 255).astype(np.uint8), objects[::-1]


def _annotation(number: int, image_id: int, label: int, visible: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(visible.astype(np.uint8)))
    return {
        "id": number,
        "image_id": image_id,
        "category_id": label,
        "iscrowd": 0,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
        "area": float(coco_mask.area(rle)),
        "bbox": [float(v) for v in coco_mask.toBbox(rle)],
    }


def make_synthetic_instances(
    root: str | Path,
    *,
    num_train: int = 300,
    num_val: int = 60,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    max_objects: int = 6,
) -> Path:
    """Write ``num_train + num_val`` scenes of up to ``max_objects`` shapes (``size`` = height,
    width) in the COCO instances layout under ``root``; the same seed writes the same files."""
    if max_objects < 1:
        raise ValueError(f"max_objects must be positive, got {max_objects}")
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    categories = [
        {"id": label, "name": name, "supercategory": "shape"}
        for label, name in enumerate(CLASSES, 1)
    ]
    image_id = annotation_id = 0
    for split, count in (("train", num_train), ("val", num_val)):
        folder = root / f"{split}2017"
        folder.mkdir(exist_ok=True)
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            picture, objects = _scene(rng, h, w, max_objects)
            name = f"{image_id:012d}.png"
            Image.fromarray(picture).save(folder / name, compress_level=1)
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
            for label, visible in objects:
                annotation_id += 1
                annotations.append(_annotation(annotation_id, image_id, label, visible))
        spec = {
            "info": {"description": f"atrous synthetic instances, seed {seed}"},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(spec))
    return root
