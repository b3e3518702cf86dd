"""Generated data sets for ``benchmarks/quality.py``, each stressing one thing the demo set does
not. Written once with fixed seeds and never tuned to a result.

- ``demo``: the ``atrous demo`` scenes (5 classes, objects at widely different scales).
- ``grey_many``: grey images, 33 classes told apart only by shape and stripe texture, many of
  them small (a class is a shape x a stripe period x an orientation).
- ``thin``: thin structures one to three pixels wide: lines, arcs and crosses on clutter.
- ``few_odd``: 24 training scenes (and the usual 60 for validation) at odd sizes, so no image
  is a multiple of the output stride.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from atrous.data import make_synthetic_dataset
from atrous.data.palette import voc_colormap
from atrous.data.synthetic import render_scene

SHAPES = ("disc", "square", "triangle", "ring")
PERIODS = (3.0, 5.0, 8.0, 12.0)
ORIENTATIONS = (0.0, math.pi / 2)


def _write(root: Path, scenes: Callable[[np.random.Generator, int, int], tuple], classes: list[str],
           num_train: int, num_val: int, sizes: Callable[[np.random.Generator], tuple[int, int]],
           seed: int) -> Path:  # fmt: skip
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_colormap()
    for split, count in (("train", num_train), ("val", num_val)):
        stems = []
        for i in range(count):
            h, w = sizes(rng)
            image, mask = scenes(rng, h, w)
            stem = f"{split}_{i:04d}"
            Image.fromarray(image).save(root / "images" / f"{stem}.png")
            png = Image.fromarray(mask, mode="P")
            png.putpalette(palette.ravel().tolist())
            png.save(root / "masks" / f"{stem}.png")
            stems.append(stem)
        (root / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    (root / "classes.json").write_text(json.dumps({"classes": classes}))
    return root


def _void_borders(mask: np.ndarray) -> np.ndarray:
    border = np.zeros_like(mask, dtype=bool)
    border[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    border[1:, :] |= mask[1:, :] != mask[:-1, :]
    mask[border] = 255
    return mask


def _grey_many(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey clutter; objects whose class is (shape, stripe period, orientation)."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = rng.uniform(60, 190) + rng.normal(0, 14, (h, w))
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 9))):  # clutter strokes
        x0, y0, x1, y1 = rng.uniform(0, 1, 4) * [w, h, w, h]
        draw.line(
            [(x0, y0), (x1, y1)], fill=int(rng.integers(0, 256)), width=int(rng.integers(1, 3))
        )
    image = np.asarray(canvas, dtype=np.float64).copy()
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        s, p, o = (int(rng.integers(n)) for n in (len(SHAPES), len(PERIODS), len(ORIENTATIONS)))
        label = 1 + (s * len(PERIODS) + p) * len(ORIENTATIONS) + o
        r = math.exp(rng.uniform(math.log(4), math.log(0.35 * min(h, w))))
        cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
        region = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(region)
        if SHAPES[s] in ("disc", "ring"):
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
            if SHAPES[s] == "ring":
                d.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=0)
        else:
            sides = 4 if SHAPES[s] == "square" else 3
            a = rng.uniform(0, 2 * math.pi)
            d.polygon([(cx + r * math.cos(a + 2 * math.pi * k / sides),
                        cy + r * math.sin(a + 2 * math.pi * k / sides)) for k in range(sides)],
                      fill=1)  # fmt: skip
        inside = np.asarray(region, dtype=bool)
        theta = ORIENTATIONS[o] + rng.normal(0, 0.1)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / PERIODS[p])
        fill = rng.uniform(70, 180) + 45 * stripes + rng.normal(0, 10, (h, w))
        image[inside] = fill[inside]
        mask[inside] = label
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2), _void_borders(
        mask
    )


THIN = ("background", "line", "arc", "cross")


def _thin(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Lines, arcs and crosses 1-3 px wide over a textured colour background."""
    base = rng.uniform(40, 215, 3) + rng.normal(0, 20, (h, w, 3))
    canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    labels = Image.new("L", (w, h), 0)
    draw, mark = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    for _ in range(int(rng.integers(3, 10))):
        kind = int(rng.integers(1, len(THIN)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        width = int(rng.integers(1, 4))
        x0, y0 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        size = rng.uniform(0.1, 0.5) * min(h, w)
        if kind == 1:
            a = rng.uniform(0, math.pi)
            points = [(x0 - size * math.cos(a), y0 - size * math.sin(a)),
                      (x0 + size * math.cos(a), y0 + size * math.sin(a))]  # fmt: skip
            draw.line(points, fill=colour, width=width)
            mark.line(points, fill=kind, width=width)
        elif kind == 2:
            box = [x0 - size, y0 - size, x0 + size, y0 + size]
            start, stop = sorted(rng.uniform(0, 360, 2))
            draw.arc(box, start, stop, fill=colour, width=width)
            mark.arc(box, start, stop, fill=kind, width=width)
        else:
            for dx, dy in ((size, 0), (0, size)):
                points = [(x0 - dx, y0 - dy), (x0 + dx, y0 + dy)]
                draw.line(points, fill=colour, width=width)
                mark.line(points, fill=kind, width=width)
    return np.asarray(canvas), np.asarray(labels, dtype=np.uint8).copy()


def _odd(rng: np.random.Generator) -> tuple[int, int]:
    return tuple(int(v) * 2 + 1 for v in rng.integers(50, 100, 2))  # type: ignore[return-value]


def _sides(low: int, high: int) -> Callable[[np.random.Generator], tuple[int, int]]:
    return lambda rng: tuple(int(v) for v in rng.integers(low, high + 1, 2))  # type: ignore[return-value]


def make(name: str, root: Path) -> Path:
    """Write data set ``name`` under ``root`` (once; an existing one is reused)."""
    root = Path(root) / name
    if (root / "val.txt").is_file():
        return root
    if name == "demo":
        return make_synthetic_dataset(root, seed=0)
    if name == "grey_many":
        classes = ["background"] + [
            f"{s}_{p:g}_{'h' if o == 0 else 'v'}"
            for s in SHAPES for p in PERIODS for o in ORIENTATIONS
        ]  # fmt: skip
        return _write(root, _grey_many, classes, 300, 60, _sides(128, 192), seed=1)
    if name == "thin":
        return _write(root, _thin, list(THIN), 300, 60, _sides(128, 192), seed=2)
    if name == "few_odd":
        return _write(root, lambda rng, h, w: render_scene(rng, h, w), ["background", "disc",
                      "square", "triangle", "ring"], 24, 60, _odd, seed=3)  # fmt: skip
    raise ValueError(f"unknown data set {name!r}")


DATASETS = ("demo", "grey_many", "thin", "few_odd")
