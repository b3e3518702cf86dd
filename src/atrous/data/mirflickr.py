"""Multi-label tagging data (the tagging task of Chen et al., ICML 2015): a reader for
MIRFLICKR-25k as downloaded, and a seeded synthetic tagging set whose tags co-occur by
construction.

MIRFLICKR-25k (Huiskes & Lew, MIR 2008): ``<root>/mirflickr/im<N>.jpg`` for ``N`` in 1..25000
and ``<root>/mirflickr25k_annotations_v080/<tag>.txt``, one image number a line. The paper's 38
tags are the 24 "potential labels" and the 14 "relevant" (``_r1``) ones; 10k images for training
and 10k for testing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ._pairs import read_image
from .synthetic import _background, _clutter

POTENTIAL_TAGS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
    "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
    "structures", "sunset", "transport", "tree", "water",
)  # fmt: skip
RELEVANT_TAGS = (
    "baby_r1", "bird_r1", "car_r1", "clouds_r1", "dog_r1", "female_r1", "flower_r1", "male_r1",
    "night_r1", "people_r1", "portrait_r1", "river_r1", "sea_r1", "tree_r1",
)  # fmt: skip
MIRFLICKR_TAGS = POTENTIAL_TAGS + RELEVANT_TAGS
"""The 38 tags (24 + 14 ``_r1``), in this order in the multi-hot vectors."""
NUM_IMAGES = 25_000
SPLITS = {"train": (1, 10_000), "test": (15_001, 25_000)}
"""Image numbers (inclusive) per split: 10k each as the paper; which 10k the paper took:
recalled, unverified (chosen: the first 10k train, the last 10k test)."""


def read_annotations(folder: str | Path, tags: Sequence[str] = MIRFLICKR_TAGS) -> Tensor:
    """``[25000, len(tags)]`` int64 multi-hot: row ``N - 1`` holds image ``N``'s tags."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder (the MIRFLICKR-25k annotations, "
            "mirflickr25k_annotations_v080.zip unpacked)"
        )
    out = torch.zeros(NUM_IMAGES, len(tags), dtype=torch.long)
    for t, tag in enumerate(tags):
        path = folder / f"{tag}.txt"
        if not path.is_file():
            raise DataError(f"{path}: missing (one file per tag; {len(tags)} tags expected)")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                image = int(line)
            except ValueError:
                raise DataError(
                    f"{path}:{number}: expected an image number, got {line.strip()!r}"
                ) from None
            if not 1 <= image <= NUM_IMAGES:
                raise DataError(f"{path}:{number}: image number {image} outside 1..{NUM_IMAGES}")
            out[image - 1, t] = 1
    return out


class MIRFlickr(Dataset):
    """``(image, tags)``: a ``tv_tensors.Image`` uint8 ``[3, H, W]`` (after ``transforms``, a
    callable on the image) and its multi-hot ``[38]`` int64 tags, for the images of ``split``
    (``train`` or ``test``); ``build_dataset``'s signature."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transforms: Callable | None = None,
        tags: Sequence[str] = MIRFLICKR_TAGS,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"MIRFLICKR split must be one of {sorted(SPLITS)}, got {split!r}")
        root = Path(root)
        self.images = root / "mirflickr"
        if not self.images.is_dir():
            raise DataError(
                f"{self.images}: no such folder (the MIRFLICKR-25k images, mirflickr25k.zip "
                "unpacked: mirflickr/im1.jpg ...)"
            )
        first, last = SPLITS[split]
        self.numbers = list(range(first, last + 1))
        self.tags = read_annotations(root / "mirflickr25k_annotations_v080", tags)[first - 1 : last]
        self.tag_names, self.transforms = tuple(tags), transforms

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        path = self.images / f"im{self.numbers[index]}.jpg"
        if not path.is_file():
            raise DataError(f"{path}: missing (image {self.numbers[index]} of MIRFLICKR-25k)")
        image = read_image(path)
        if self.transforms is not None:
            image = self.transforms(image)
        return image, self.tags[index]


SHAPES = ("disc", "square", "triangle", "ring")
TAG_COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (50, 80, 200)}
SYNTHETIC_TAGS = tuple(f"{c} {s}" for s in SHAPES for c in TAG_COLOURS)
"""12 tags: a shape of a colour is in the picture."""
THEMES = ((0, 4, 8), (1, 5, 9), (2, 6, 10), (3, 7, 11), (0, 7, 10), (2, 3, 5))
"""Tag groups drawn together (the co-occurrence the pairwise tables can learn)."""


@dataclass(frozen=True)
class TagSet:
    """Images ``[M, 3, S, S]`` float in ``[0, 1]`` and multi-hot tags ``[M, T]`` int64."""

    images: Tensor
    tags: Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.tags)


def _draw_shape(
    draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, colour, angle: float
) -> None:
    if kind in ("disc", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        if kind == "ring":
            inner = 0.5 * r
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=(128, 128, 128))
        return
    sides = 4 if kind == "square" else 3
    points = [
        (cx + r * math.cos(angle + 2 * math.pi * k / sides),
         cy + r * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]  # fmt: skip
    draw.polygon(points, fill=colour)


def make_synthetic_tags(
    num_images: int,
    *,
    seed: int = 0,
    size: int = 32,
    theme_p: float = 0.85,
    stray_p: float = 0.04,
    pixel_noise: float = 0.18,
) -> TagSet:
    """``num_images`` pictures on the demo scenes' cluttered backgrounds: one or two themes
    (:data:`THEMES`) are drawn, each of their tags is present with ``theme_p``, every other
    tag with ``stray_p``; each present tag is a small shape of its colour, placed at random
    (shapes may hide each other), under pixel noise. The same seed gives the same tensors."""
    rng = np.random.default_rng(seed)
    names = list(SYNTHETIC_TAGS)
    colours = list(TAG_COLOURS.values())
    images = np.zeros((num_images, size, size, 3), dtype=np.float32)
    tags = np.zeros((num_images, len(names)), dtype=np.int64)
    for m in range(num_images):
        chosen = rng.choice(len(THEMES), size=1 + int(rng.random() < 0.3), replace=False)
        theme = {t for c in chosen for t in THEMES[c]}
        present = [
            t for t in range(len(names)) if rng.random() < (theme_p if t in theme else stray_p)
        ]
        canvas = Image.fromarray(np.clip(_background(rng, size, size), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        _clutter(rng, draw, size, size)
        for t in rng.permutation(present):
            kind, colour = SHAPES[t // len(colours)], colours[t % len(colours)]
            r = rng.uniform(0.12, 0.22) * size
            cx, cy = rng.uniform(r, size - r, 2)
            _draw_shape(draw, kind, cx, cy, r, colour, rng.uniform(0, 2 * math.pi))
            tags[m, t] = 1
        picture = np.asarray(canvas, dtype=np.float32) / 255
        images[m] = picture + rng.normal(0, pixel_noise, picture.shape)
    images = np.ascontiguousarray(np.clip(images, 0, 1).transpose(0, 3, 1, 2))
    return TagSet(torch.from_numpy(images), torch.from_numpy(tags), tuple(names))
