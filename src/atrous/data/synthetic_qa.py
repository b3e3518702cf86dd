"""A seeded shape-QA set for the ABC-CNN demo, benchmark and tests: scenes of shapes on the
smooth, blotchy background of :mod:`atrous.data.synthetic`, and object, colour, count and
location questions generated from the objects' masks, each with its answer and the mask of the
object(s) it is about (for the attention IoU).

Each ``size x size`` scene (64 by default) has 1 to ``max_objects`` non-overlapping shapes
(disc, square, triangle; each of the area of a disc of radius 5 to 10 px; squares
axis-aligned, triangles turned at random) in one of four colours (red, green, blue, yellow,
with pixel noise), no two of the same shape and colour, none whose centre is within 4 px of
the image's midlines (so the quadrant is never ambiguous). Per scene one question of each
type, where one can be asked:

- object: "what shape is the <colour> object ?" (that colour's object is unique) -> its shape;
- colour: "what colour is the <shape> ?" (that shape is unique) -> its colour;
- count: "how many <shape>s are there ?" (any of the three shapes) -> "zero" ... "four"; the
  question's mask is the union of those shapes (empty for "zero": no attention IoU);
- location: "where is the <colour> <shape> ?" -> "top left", "top right", "bottom left" or
  "bottom right" (the quadrant of the object's centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .synthetic import _EQUAL_AREA, COLOURS, _background, _shape

SHAPES = ("disc", "square", "triangle")
COLOUR_NAMES = ("red", "green", "blue", "yellow")
QA_COLOURS = {name: COLOURS[i].astype(np.float64) for i, name in enumerate(COLOUR_NAMES)}
"""Each colour's RGB (the demo scenes' first four object colours)."""
COUNTS = ("zero", "one", "two", "three", "four")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
QUESTION_TYPES = ("object", "colour", "count", "location")
ANSWERS = (*SHAPES, *COLOUR_NAMES, *COUNTS, *QUADRANTS)
"""Every answer the set can give."""
SEGMENTATION_CLASSES = ("background", *(f"{c} {s}" for s in SHAPES for c in COLOUR_NAMES))
"""The classes of :meth:`ShapeQA.segmentation_labels`: background, then one per shape and
colour (class ``1 + 4 * shape + colour``)."""
RADIUS = (5.0, 10.0)
"""Radii of equal-area discs (squares and triangles of the same area are drawn)."""
_REACH = max(_EQUAL_AREA.values())
MIDLINE_MARGIN = 4.0
NOISE = 10.0


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    centre: tuple[float, float]  # (x, y)
    mask: np.ndarray  # bool [H, W]


def _draw(shape: str, cx: float, cy: float, r: float, angle: float, size: int) -> np.ndarray:
    region = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(region)
    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape == "square":
        draw.polygon(_shape("square", cx, cy, r * _EQUAL_AREA["square"], math.pi / 4), fill=1)
    else:
        draw.polygon(_shape("triangle", cx, cy, r * _EQUAL_AREA["triangle"], angle), fill=1)
    return np.asarray(region, dtype=bool)


def _place(rng: np.random.Generator, size: int, count: int) -> list[tuple[float, float, float]]:
    """Up to ``count`` non-overlapping discs ``(cx, cy, r)`` (2 px apart at least), centres off
    the midlines."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(60 * count):
        if len(placed) == count:
            break
        r = rng.uniform(*RADIUS)
        # the square's and triangle's corners reach r * (equal-area factor) from the centre
        reach = r * _REACH
        cx, cy = rng.uniform(reach + 1, size - reach - 1, size=2)
        if min(abs(cx - size / 2), abs(cy - size / 2)) < MIDLINE_MARGIN:
            continue
        if all(math.hypot(cx - x, cy - y) > reach + q * _REACH + 2 for x, y, q in placed):
            placed.append((cx, cy, r))
    return placed


def render_qa_scene(
    rng: np.random.Generator, size: int = 64, max_objects: int = 4
) -> tuple[np.ndarray, list[ShapeObject]]:
    """One scene: an ``HxWx3`` uint8 image and its objects (shape, colour, centre, mask)."""
    image = _background(rng, size, size)
    kinds = [(s, c) for s in SHAPES for c in COLOUR_NAMES]
    chosen = rng.permutation(len(kinds))[: int(rng.integers(1, max_objects + 1))]
    objects = []
    for (cx, cy, r), index in zip(_place(rng, size, len(chosen)), chosen, strict=False):
        shape, colour = kinds[int(index)]
        mask = _draw(shape, cx, cy, r, rng.uniform(0, 2 * math.pi), size)
        noise = rng.normal(0, NOISE, size=(size, size, 3))
        image[mask] = (QA_COLOURS[colour] + noise)[mask]
        objects.append(ShapeObject(shape, colour, (float(cx), float(cy)), mask))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def quadrant(centre: tuple[float, float], size: int) -> str:
    x, y = centre
    return f"{'top' if y < size / 2 else 'bottom'} {'left' if x < size / 2 else 'right'}"


def scene_questions(
    rng: np.random.Generator, objects: list[ShapeObject], size: int
) -> list[dict[str, Any]]:
    """One question of each type that the scene allows: ``question``, ``answer``, ``type``
    and ``mask`` (bool ``[H, W]``, the object(s) the question is about)."""
    empty = np.zeros((size, size), dtype=bool)
    out = []
    by_colour = {c: [o for o in objects if o.colour == c] for c in COLOUR_NAMES}
    by_shape = {s: [o for o in objects if o.shape == s] for s in SHAPES}
    unique_colours = [c for c, os in by_colour.items() if len(os) == 1]
    if unique_colours:
        o = by_colour[unique_colours[int(rng.integers(len(unique_colours)))]][0]
        question = f"what shape is the {o.colour} object ?"
        out.append({"question": question, "answer": o.shape, "type": "object", "mask": o.mask})
    unique_shapes = [s for s, os in by_shape.items() if len(os) == 1]
    if unique_shapes:
        o = by_shape[unique_shapes[int(rng.integers(len(unique_shapes)))]][0]
        question = f"what colour is the {o.shape} ?"
        out.append({"question": question, "answer": o.colour, "type": "colour", "mask": o.mask})
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    union = np.logical_or.reduce([o.mask for o in by_shape[shape]] + [empty])
    count = COUNTS[len(by_shape[shape])]
    question = f"how many {shape}s are there ?"
    out.append({"question": question, "answer": count, "type": "count", "mask": union})
    if objects:
        o = objects[int(rng.integers(len(objects)))]
        question, where = f"where is the {o.colour} {o.shape} ?", quadrant(o.centre, size)
        out.append({"question": question, "answer": where, "type": "location", "mask": o.mask})
    return out


class ShapeQA(Dataset):
    """The shape-QA set in memory. Items are ``(tv_tensors.Image uint8 [3,H,W], target)``,
    target: ``question``, ``answer``, ``type``, ``mask`` (bool ``[H, W]``) and ``image_id``;
    ``questions``, ``answers`` and ``types`` list every question's strings (for vocabularies),
    ``objects`` each scene's objects."""

    def __init__(
        self, images: Tensor, items: list[dict[str, Any]], objects: list[list[ShapeObject]]
    ) -> None:
        self.images, self.items, self.objects = images, items, objects
        self.questions = [item["question"] for item in items]
        self.answers = [item["answer"] for item in items]
        self.types = [item["type"] for item in items]

    def __len__(self) -> int:
        return len(self.items)

    def segmentation_labels(self) -> Tensor:
        """Each scene's ``[H, W]`` int64 class map over :data:`SEGMENTATION_CLASSES`
        (``[num_images, H, W]``): the labels that pretrain the ABC-CNN's features."""
        labels = torch.zeros(self.images.shape[0], *self.images.shape[-2:], dtype=torch.int64)
        for label, objects in zip(labels, self.objects, strict=True):
            for o in objects:
                cls = 1 + len(COLOUR_NAMES) * SHAPES.index(o.shape) + COLOUR_NAMES.index(o.colour)
                label[torch.from_numpy(o.mask)] = cls
        return labels

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        item = self.items[index]
        target = {**item, "mask": torch.from_numpy(item["mask"])}
        return tv_tensors.Image(self.images[item["image_id"]]), target


def make_shape_qa(
    num_images: int, *, size: int = 64, max_objects: int = 4, seed: int = 0
) -> ShapeQA:
    """``num_images`` scenes and their questions (about 3.7 per scene); the same seed gives the
    same set."""
    if not 1 <= max_objects <= len(COUNTS) - 1:
        raise ValueError(f"max_objects must be 1 to {len(COUNTS) - 1}, not {max_objects}")
    rng = np.random.default_rng(seed)
    images, items, scenes = [], [], []
    for image_id in range(num_images):
        image, objects = render_qa_scene(rng, size, max_objects)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        scenes.append(objects)
        for qa in scene_questions(rng, objects, size):
            items.append({**qa, "image_id": image_id})
    stacked = torch.stack(images) if images else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return ShapeQA(stacked, items, scenes)
