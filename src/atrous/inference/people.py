"""PersonLab's people as files: a picture (instance masks, skeletons, scores) and a COCO
results JSON, written by ``atrous predict`` beside the class-id PNG and overlay.

People are :func:`atrous.tasks.personlab_decode.decode`'s: each ``{"keypoints": [17, 3]
(x, y, score) in pixels, "score": float, "mask": bool [H, W]}``, highest score first.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pycocotools import mask as mask_utils

from ..data.person_keypoints import KEYPOINT_NAMES, SKELETON

MIN_SCORE = 0.05
"""People scoring below this are not drawn (they stay in the JSON, which AP needs whole). A
person's score is the mean of its 17 expected-OKS keypoint scores after the soft keypoint NMS
(PersonLab Sec. 3.2), so 0.05 is about one sure keypoint in 17: it hides seeds that grew into
nobody, and duplicates the NMS has already emptied."""
KEYPOINT_THRESHOLD = 0.05
"""Keypoints scoring below this are not drawn, nor the limbs that touch them. The decoder
places all 17 keypoints of everyone, walking the tree through occluded and off-image ones; a
keypoint's score is its heatmap probability times its expected OKS (Sec. 3.2), near 0 for such
guesses and near 1 for a sure hit. 0.05 drops the guesses but keeps weak, real evidence: a
picture is for seeing what the model found."""
FILL_ALPHA = 0.45
"""How much of a person's colour tints its mask: the image stays readable underneath."""


def _colour(index: int) -> np.ndarray:
    """Person ``index``'s colour: hues a golden-ratio step apart, so neighbours in the score
    order differ strongly and no two of the first dozen look alike."""
    hue = (0.58 + 0.618034 * index) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.95)) * 255


def _side(index: int) -> str:
    name = KEYPOINT_NAMES[index]
    return name.split("_", 1)[0] if name.startswith(("left_", "right_")) else "centre"


def _shade(colour: np.ndarray, side: str) -> tuple[int, int, int]:
    """A person's colour for one side of the body: left lighter, right darker."""
    if side == "left":
        colour = colour + 0.5 * (255 - colour)
    elif side == "right":
        colour = 0.55 * colour
    red, green, blue = (int(round(c)) for c in colour)
    return red, green, blue


def _limb_side(a: int, b: int) -> str:
    sides = {_side(a), _side(b)} - {"centre"}
    return sides.pop() if len(sides) == 1 else "centre"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _as_array(value: Any, dtype: type) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` of its edge (the image's border counts as
    edge), eroding only the box round the mask so that a large image costs no more."""
    rows, cols = np.nonzero(mask)
    edge = np.zeros_like(mask)
    if not len(rows):
        return edge
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    box = np.pad(mask[top:bottom, left:right], 1).astype(np.uint8) * 255
    eroded = Image.fromarray(box)
    for _ in range(width):  # a 3x3 minimum filter, width times: a square of radius width
        eroded = eroded.filter(ImageFilter.MinFilter(3))
    inner = np.asarray(eroded)[1:-1, 1:-1] > 0
    edge[top:bottom, left:right] = mask[top:bottom, left:right] & ~inner
    return edge


def draw_people(
    image: np.ndarray,
    people: Sequence[dict[str, Any]],
    *,
    min_score: float = MIN_SCORE,
    keypoint_threshold: float = KEYPOINT_THRESHOLD,
) -> np.ndarray:
    """The ``HxWx3`` uint8 image with each person scoring ``min_score`` or more drawn in its
    own colour: mask tinted and outlined, skeleton (COCO's, between keypoints scoring
    ``keypoint_threshold`` or more) and keypoints, left side lighter and right side darker,
    and the score above the person. Line widths grow with the image; the best is drawn last,
    on top."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_people needs an HxWx3 uint8 image, got shape {list(image.shape)}")
    height, width = image.shape[:2]
    shown = [(i, p) for i, p in enumerate(people) if float(p["score"]) >= min_score]
    canvas = image.astype(np.float64)
    line = max(1, round(max(height, width) / 280))
    masks = {}
    for index, person in shown:  # tint and outline every mask first: lines go on top
        mask = _as_array(person["mask"], bool)
        if mask.shape != (height, width):
            raise ValueError(
                f"person {index}: mask is {list(mask.shape)}, the image {[height, width]}"
            )
        masks[index] = mask
        colour = _colour(index)
        canvas[mask] = (1 - FILL_ALPHA) * canvas[mask] + FILL_ALPHA * colour
        canvas[_outline(mask, line)] = colour
    picture = Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = _font(max(10, round(max(height, width) / 45)))
    dot = max(2, round(1.5 * line))
    for index, person in sorted(shown, key=lambda item: float(item[1]["score"])):
        colour = _colour(index)
        points = _as_array(person["keypoints"], np.float64)
        visible = points[:, 2] >= keypoint_threshold
        for a, b in SKELETON:
            if a < len(points) and b < len(points) and visible[a] and visible[b]:
                ends = [tuple(points[a, :2]), tuple(points[b, :2])]
                draw.line(ends, fill=_shade(colour, _limb_side(a, b)), width=line)
        for k in np.flatnonzero(visible):
            x, y = points[k, :2]
            box = (x - dot, y - dot, x + dot, y + dot)
            draw.ellipse(box, fill=_shade(colour, _side(int(k))), outline=(0, 0, 0))
        score = f"{float(person['score']):.2f}"
        _label(draw, font, score, colour, masks[index], points[visible], (width, height))
    return np.asarray(picture)


def _label(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    text: str,
    colour: np.ndarray,
    mask: np.ndarray,
    points: np.ndarray,
    size: tuple[int, int],
) -> None:
    """``text`` on a patch of the person's colour, just above its topmost mask pixel or drawn
    keypoint (inside the image)."""
    rows, cols = np.nonzero(mask)
    xs = np.concatenate([cols, points[:, 0]]) if len(points) else cols.astype(np.float64)
    ys = np.concatenate([rows, points[:, 1]]) if len(points) else rows.astype(np.float64)
    if not len(xs):
        return
    top = float(ys.min())
    left = float(xs[ys <= top + 0.5].min())
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    w, h = x1 - x0 + 2, y1 - y0 + 2
    width, height = size
    x = min(max(0.0, left), max(0.0, width - w))
    y = top - h - 1 if top - h - 1 >= 0 else min(top + 1, max(0.0, height - h))
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=_shade(colour, "centre"))
    ink = (0, 0, 0) if colour @ (0.299, 0.587, 0.114) > 140 else (255, 255, 255)
    draw.text((x + 1 - x0, y + 1 - y0), text, fill=ink, font=font)


def _short(value: float) -> float:
    return float(f"{float(value):.6g}")


def people_json(
    people: Sequence[dict[str, Any]], image_name: str, size: tuple[int, int]
) -> dict[str, Any]:
    """One image's people in COCO's results format, all of them (AP ranks by score): for each
    ``category_id`` 1, ``keypoints`` (51 numbers: x, y, score per keypoint), ``score``,
    ``segmentation`` (compressed RLE, counts as text) and ``bbox`` (x, y, w, h of the mask).
    ``size`` is ``(height, width)``; add ``image_id`` to each to feed ``COCO.loadRes``."""
    height, width = size
    results = []
    for index, person in enumerate(people):
        mask = _as_array(person["mask"], bool)
        if mask.shape != (height, width):
            raise ValueError(
                f"{image_name}: person {index}'s mask is {list(mask.shape)}, the image "
                f"{[height, width]}"
            )
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        points = _as_array(person["keypoints"], np.float64)
        flat = [_short(v) if i % 3 == 2 else round(float(v), 2) for i, v in enumerate(points.flat)]
        results.append(
            {
                "category_id": 1,
                "keypoints": flat,
                "score": _short(person["score"]),
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            }
        )
    return {"image": image_name, "height": height, "width": width, "people": results}


def save_people(
    people: Sequence[dict[str, Any]],
    image: np.ndarray,
    out_dir: str | Path,
    stem: str,
    *,
    image_name: str | None = None,
    min_score: float = MIN_SCORE,
    keypoint_threshold: float = KEYPOINT_THRESHOLD,
) -> tuple[Path, Path]:
    """Write ``<stem>_people.jpg`` (:func:`draw_people`) and ``<stem>_people.json``
    (:func:`people_json`, naming the image ``image_name``, default ``stem``); return both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = draw_people(image, people, min_score=min_score, keypoint_threshold=keypoint_threshold)
    jpg = out_dir / f"{stem}_people.jpg"
    Image.fromarray(picture).save(jpg, quality=90)
    body = people_json(people, image_name or stem, (image.shape[0], image.shape[1]))
    path = out_dir / f"{stem}_people.json"
    path.write_text(json.dumps(body) + "\n")
    return jpg, path
