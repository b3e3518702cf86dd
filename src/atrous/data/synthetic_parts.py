"""Seeded stick figures made of six coloured parts, in the Person-Part PNG layout, for the HAZN
demo and tests; ``build_dataset("person_part", root, split)`` reads them back.

What HAZN is built for is built in: objects at widely different scales (heights log-uniform
from about 12 px, where a part is a few pixels, to about 110 px on a 128 px image; about 40%
under 30 px), several per image, a third of them placed against the previous one so they touch
or overlap (the later one in front). Each part class (the Person-Part six: head, torso, upper
arms, lower arms, upper legs, lower legs) wears its own colour family, shaded per object, with
pixel noise, on the cluttered background of :mod:`atrous.data.synthetic` whose strokes wear
similar colours. Besides the part-label PNGs the exact instance PNGs are written (object id in
R, part id in G + 256 B; one part instance per (object, part class)), so the reader does not
fall back to connected components. Layout under ``root``::

    JPEGImages/<id>.png
    pascal_person_part/pascal_person_part_gt/<id>.png            palette PNG, labels 0..6
    pascal_person_part/pascal_person_part_instances/<id>.png     RGB instance ids
    pascal_person_part/pascal_person_part_trainval_list/{train,val}.txt
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .palette import save_palette_png, voc_colormap
from .person_part import _compact
from .synthetic import _background, _clutter
from .synthetic_people import _pose

PART_COLOURS = np.array(
    [(225, 185, 150), (60, 150, 70), (220, 120, 40), (235, 205, 60), (50, 80, 190), (150, 60, 170)],
    dtype=np.float64,
)
"""Colour of each part class, in Person-Part order (head, torso, upper arms, lower arms, upper
legs, lower legs)."""
HEIGHTS = (12.0, 110.0)
"""Smallest and largest object height in pixels on a 128 px image (log-uniform between)."""
NEAR_P = 1 / 3
"""How often an object is placed against the previous one (touching or overlapping)."""
NOISE = 8.0
"""Standard deviation of the per-pixel colour noise on objects."""
_HEAD, _TORSO, _UPPER_ARM, _LOWER_ARM, _UPPER_LEG, _LOWER_LEG = range(1, 7)


def _draw_figure(points: np.ndarray, head: np.ndarray, height: float, h: int, w: int):
    """One figure's ``HxW`` uint8 part map (0 outside it), from its 17 COCO-order keypoints:
    legs, then torso, then arms, then head, each drawn over the one before."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)

    def limb(a: int, b: int, part: int, width: float) -> None:
        p, q = tuple(points[a]), tuple(points[b])
        draw.line([p, q], fill=part, width=max(1, round(width)))
        if width >= 2:  # round joints once they show
            for x, y in (p, q):
                r = width / 2
                draw.ellipse([x - r, y - r, x + r, y + r], fill=part)

    for hip, knee, ankle in ((11, 13, 15), (12, 14, 16)):
        limb(knee, ankle, _LOWER_LEG, 0.07 * height)
        limb(hip, knee, _UPPER_LEG, 0.08 * height)
    draw.polygon([tuple(points[j]) for j in (5, 6, 12, 11)], fill=_TORSO)
    neck = (points[5] + points[6]) / 2
    draw.line([tuple(neck), tuple(head)], fill=_TORSO, width=max(1, round(0.05 * height)))
    for shoulder, elbow, wrist in ((5, 7, 9), (6, 8, 10)):
        limb(shoulder, elbow, _UPPER_ARM, 0.06 * height)
        limb(elbow, wrist, _LOWER_ARM, 0.05 * height)
    r = max(0.8, 0.075 * height)
    draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], fill=_HEAD)
    return np.asarray(canvas)


def _scene(rng: np.random.Generator, h: int, w: int, max_objects: int):
    """One image (``HxWx3`` uint8), its part labels (``HxW`` uint8) and the object and part
    instance ids (int64; one part id per (object, part class)) of the visible figures."""
    canvas = Image.fromarray(np.clip(_background(rng, h, w), 0, 255).astype(np.uint8))
    _clutter(rng, ImageDraw.Draw(canvas), h, w)
    image = np.asarray(canvas, dtype=np.float64).copy()
    labels = np.zeros((h, w), dtype=np.uint8)
    objects = np.zeros((h, w), dtype=np.int64)
    parts = np.zeros((h, w), dtype=np.int64)
    unit, previous = min(h, w) / 128, None
    for k in range(1, int(rng.integers(1, max_objects + 1)) + 1):
        height = math.exp(rng.uniform(*np.log(HEIGHTS))) * unit
        if previous is not None and rng.random() < NEAR_P:
            step = rng.uniform(0.15, 0.5) * (height + previous[1]) * rng.choice([-1, 1])
            hip = np.clip(previous[0] + [step, rng.normal(0, 0.1 * height)], 0, [w - 1, h - 1])
        else:  # the figure reaches about 0.6 height above its hip and 0.5 below
            low, high = 0.6 * height, h - 0.5 * height
            y = rng.uniform(low, high) if low < high else h / 2 + 0.05 * height
            hip = np.array([rng.uniform(0.08, 0.92) * w, y])
        previous = (hip, height)
        points, head = _pose(rng, hip, height)
        figure = _draw_figure(points, head, height, h, w)
        light, jitter = rng.uniform(0.8, 1.15), rng.normal(0, 10, size=3)
        noise = rng.normal(0, NOISE, size=(h, w, 3))
        for part in range(1, len(PART_COLOURS) + 1):
            where = figure == part
            image[where] = PART_COLOURS[part - 1] * light + jitter + noise[where]
            labels[where], objects[where] = part, k
            parts[where] = (k - 1) * len(PART_COLOURS) + part
    picture = np.clip(image, 0, 255).astype(np.uint8)
    return picture, labels, _compact(objects), _compact(parts)


def make_synthetic_parts(
    root: str | Path,
    *,
    num_train: int = 300,
    num_val: int = 60,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    max_objects: int = 3,
) -> Path:
    """Write ``num_train + num_val`` scenes of 1 to ``max_objects`` stick figures (``size`` =
    height, width) in the Person-Part PNG layout, with exact instance PNGs, under ``root``;
    the same seed writes the same files."""
    if not 1 <= max_objects < 255:
        raise ValueError(f"max_objects must be in [1, 254] (ids are 8-bit), got {max_objects}")
    root = Path(root)
    base = root / "pascal_person_part"
    folders = {
        "images": root / "JPEGImages",
        "gt": base / "pascal_person_part_gt",
        "instances": base / "pascal_person_part_instances",
        "lists": base / "pascal_person_part_trainval_list",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_colormap()
    for split, count in (("train", num_train), ("val", num_val)):
        ids = []
        for i in range(count):
            name = f"{split}_{i:05d}"
            picture, labels, objects, parts = _scene(rng, *size, max_objects)
            Image.fromarray(picture).save(folders["images"] / f"{name}.png", compress_level=1)
            save_palette_png(labels, palette, folders["gt"] / f"{name}.png")
            rgb = np.stack([objects, parts % 256, parts // 256], axis=-1).astype(np.uint8)
            Image.fromarray(rgb).save(folders["instances"] / f"{name}.png")
            ids.append(name)
        (folders["lists"] / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root
