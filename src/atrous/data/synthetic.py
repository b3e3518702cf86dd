"""A seeded, procedurally generated segmentation data set for the demo and the tests.

Each scene has what DeepLab is built for: objects of four shape classes at widely different
scales (a few pixels to most of the image, so a fixed receptive field is not enough), drawn over
each other (occlusion), on textured, cluttered backgrounds whose strokes use the same colours
as the objects. Colours are shared: the clutter wears every object colour, and every class
wears, now and then, a colour it shares with another class; then only shape and context tell
them apart (a ring is a disc with background showing through its hole).
Object borders are marked 255 (ignore) one pixel wide, as in PASCAL VOC. It writes the layout
:class:`~atrous.data.folder.SegmentationFolder` reads, so the demo goes through the real loader.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .info import IGNORE_INDEX
from .palette import save_palette_png, voc_colormap

CLASSES = ("background", "disc", "square", "triangle", "ring")
COLOURS = np.array(
    [(200, 40, 40), (40, 160, 60), (50, 80, 200), (220, 200, 50), (160, 60, 180), (40, 180, 190)]
)
"""Object colours; the background clutter uses them all."""
CLASS_COLOURS = {"disc": (0, 4), "square": (1, 4), "triangle": (2, 5), "ring": (3, 5)}
"""Each class's own colour, then the colour it shares with another class (and the clutter)."""
SHARED_COLOUR_P = 0.2
"""How often an object wears its shared colour, where only its shape tells its class."""


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour gradient with low-frequency blotches and pixel noise."""
    yy, xx = np.mgrid[0:h, 0:w][..., None] / max(h, w)
    c0, c1, c2 = rng.uniform(40, 215, size=(3, 3))
    img = c0 + 0.6 * yy * (c1 - c0) + 0.6 * xx * (c2 - c0)
    coarse = rng.normal(0, 25, size=(max(2, h // 16), max(2, w // 16), 3))
    blotch = np.array(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    return img + (blotch - 128) + rng.normal(0, 8, size=(h, w, 3))


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, h: int, w: int) -> None:
    """Thin strokes and arcs in object colours: background that looks like object parts."""
    for _ in range(int(rng.integers(2, 8))):
        colour = tuple(int(c) for c in COLOURS[rng.integers(len(COLOURS))])
        x0, y0, x1, y1 = rng.uniform(-0.2, 1.2, 4) * [w, h, w, h]
        width = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
        else:
            box = [min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1]
            draw.arc(box, *sorted(rng.uniform(0, 360, 2)), fill=colour, width=width)


_EQUAL_AREA = {
    "disc": 1.0,
    "ring": 1.0,
    "square": math.sqrt(math.pi / 2),
    "triangle": math.sqrt(math.pi / (3 * math.sqrt(3) / 4)),
}
"""Circumradius factors that give a square or triangle the area of a disc of the same size."""


def _shape(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Outline of a regular polygon (square, triangle) of circumradius ``r``."""
    sides = {"square": 4, "triangle": 3}[kind]
    return [
        (
            cx + r * math.cos(angle + 2 * math.pi * k / sides),
            cy + r * math.sin(angle + 2 * math.pi * k / sides),
        )
        for k in range(sides)
    ]


def _texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """An object's fill: its colour with stripes or speckle, so surfaces are not flat."""
    base = colour + rng.normal(0, 12, size=3)
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:h, 0:w]
        theta, period = rng.uniform(0, math.pi), rng.uniform(3, 10)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        return base + 30 * stripes[..., None]
    return base + rng.normal(0, 18, size=(h, w, 3))


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 6,
    *,
    instances: bool = False,
) -> tuple[np.ndarray, ...]:
    """One scene: an ``HxWx3`` uint8 image and its ``HxW`` uint8 class-id mask; with
    ``instances`` also an ``HxW`` uint16 map of object numbers (1, 2, ... in drawing order; 0
    for background), every object a thing instance."""
    image = _background(rng, height, width)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    _clutter(rng, ImageDraw.Draw(canvas), height, width)
    image = np.asarray(canvas, dtype=np.float64).copy()
    mask = np.zeros((height, width), dtype=np.uint8)
    objects = np.zeros((height, width), dtype=np.uint16)
    small = min(height, width)
    for number in range(1, int(rng.integers(1, max_objects + 1)) + 1):
        label = int(rng.integers(1, len(CLASSES)))
        kind = CLASSES[label]
        # Log-uniform size: from a few pixels to most of the image.
        r = math.exp(rng.uniform(math.log(3), math.log(0.45 * small))) * _EQUAL_AREA[kind]
        cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
        region = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(region)
        if kind in ("disc", "ring"):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
            if kind == "ring":
                inner = r * rng.uniform(0.45, 0.7)
                draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
        else:
            draw.polygon(_shape(kind, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=1)
        inside = np.asarray(region, dtype=bool)
        if not inside.any():
            continue
        colour = COLOURS[CLASS_COLOURS[kind][int(rng.random() < SHARED_COLOUR_P)]]
        image[inside] = _texture(rng, height, width, colour)[inside]
        mask[inside] = label
        objects[inside] = number
    # VOC-style void border: pixels next to a different label are ignored.
    border = np.zeros_like(mask, dtype=bool)
    border[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    border[1:, :] |= mask[1:, :] != mask[:-1, :]
    mask[border] = IGNORE_INDEX
    picture = np.clip(image, 0, 255).astype(np.uint8)
    return (picture, mask, objects) if instances else (picture, mask)


def make_synthetic_dataset(
    root: str | Path,
    *,
    num_train: int = 300,
    num_val: int = 60,
    size_range: tuple[int, int] = (96, 160),
    seed: int = 0,
    panoptic: bool = False,
) -> Path:
    """Write ``num_train + num_val`` scenes to ``root`` in the folder layout, with splits.

    Image sides are drawn from ``size_range``; the same seed writes the same files.
    ``panoptic`` also writes ``instances/<stem>.png`` (16-bit object numbers, 0 = background:
    every shape is a thing instance), which ``dataset: panoptic_folder`` reads.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    if panoptic:
        (root / "instances").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_colormap()
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            image, mask, objects = render_scene(rng, h, w, instances=True)
            stem = f"{split}_{i:04d}"
            if panoptic:
                Image.fromarray(objects).save(root / "instances" / f"{stem}.png")
            Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=92)
            save_palette_png(mask, palette, root / "masks" / f"{stem}.png")
            splits[split].append(stem)
    for split, stems in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    spec = {"classes": list(CLASSES), "palette": palette[: len(CLASSES)].tolist()}
    if panoptic:
        spec["thing_classes"] = list(range(1, len(CLASSES)))  # every shape; background is stuff
    (root / "classes.json").write_text(json.dumps(spec, indent=1))
    return root
