"""Seeded stick-figure people in the COCO person-keypoints layout, for the PersonLab demo and
tests: ``annotations/person_keypoints_{train,val}2017.json`` + ``{train,val}2017/*.png``, read
back by :class:`~atrous.data.keypoints.COCOKeypoints`.

Each person has the 17 COCO keypoints at anatomical places (a disk head with eyes, nose and
ears; shoulders, elbows, wrists, hips, knees, ankles) in a random pose and size, faces the
viewer (its left side on the image's right), and wears one hue on its left limbs and another on
its right ones, so left and right can be told apart. People overlap: the one drawn later is in
front, masks are the visible parts (disjoint), and keypoints behind another person have
visibility 1. As in COCO, some keypoints are unlabelled (v = 0 at x = y = 0, also those outside
the image) and now and then a person has no keypoints at all (``num_keypoints`` 0).

A left-right flip swaps the keypoint labels but not the hues: trained with flips, the hue cue
contradicts itself on half the samples and only the geometric one (left on the image's right)
holds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from .person_keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON
from .synthetic import _background, _clutter

LEFT_HUE = np.array([235.0, 95.0, 35.0])
"""Orange: every person's left arm and leg (legs darker)."""
RIGHT_HUE = np.array([35.0, 115.0, 235.0])
"""Blue: every person's right arm and leg."""
_SHIRTS = np.array([(70, 150, 70), (150, 150, 150), (120, 85, 50), (200, 190, 90), (110, 60, 140)])
_SKINS = np.array([(240, 200, 170), (205, 150, 110), (150, 100, 70), (95, 65, 45)])
_TORSO, _HEAD, _ARM_L, _ARM_R, _LEG_L, _LEG_R, _EYE, _NOSE = range(1, 9)
UNLABELLED_P = 0.04
"""How often a keypoint of an annotated person is left unlabelled."""
UNANNOTATED_P = 0.07
"""How often a person gets no keypoints at all (COCO's ``num_keypoints`` 0)."""
NEAR_P = 0.4
"""How often a person stands next to the previous one (touching or overlapping)."""


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _pose(
    rng: np.random.Generator, hip: np.ndarray, height: float
) -> tuple[np.ndarray, np.ndarray]:
    """The 17 keypoints (``[17, 2]``, COCO order) of a person ``height`` pixels tall whose hip
    centre is ``hip``, in a random pose, and the centre of its head."""
    lean = rng.normal(0, 0.15) if rng.random() < 0.85 else rng.uniform(-1.0, 1.0)
    up = np.array([math.sin(lean), -math.cos(lean)])
    side = np.array([math.cos(lean), math.sin(lean)])  # the person's left: the image's right
    k = np.zeros((NUM_KEYPOINTS, 2))
    shoulder_mid = hip + up * 0.30 * height
    head = shoulder_mid + up * 0.14 * height
    r = 0.07 * height
    yaw = rng.uniform(-0.3, 0.3) * r
    k[0] = head + side * yaw - up * 0.15 * r  # nose
    k[1], k[2] = (head + up * 0.25 * r + side * (yaw + s * 0.4 * r) for s in (1, -1))  # eyes
    k[3], k[4] = (head + up * 0.1 * r + side * s * 0.95 * r for s in (1, -1))  # ears
    for s, (sh, el, wr, hp, kn, an) in ((1, (5, 7, 9, 11, 13, 15)), (-1, (6, 8, 10, 12, 14, 16))):
        k[sh] = shoulder_mid + side * s * 0.11 * height
        k[hp] = hip + side * s * 0.07 * height
        lift = rng.uniform(-0.3, 2.6)  # 0: arm hanging, pi/2: held out sideways
        upper = -up * math.cos(lift) + side * s * math.sin(lift)
        k[el] = k[sh] + upper * 0.17 * height
        k[wr] = k[el] + _rotate(upper, rng.uniform(-2.4, 2.4)) * 0.15 * height
        spread = rng.uniform(-0.3, 0.8) if rng.random() < 0.8 else rng.uniform(0.8, 1.6)
        thigh = -up * math.cos(spread) + side * s * math.sin(spread)
        k[kn] = k[hp] + thigh * 0.24 * height
        k[an] = k[kn] + _rotate(thigh, rng.uniform(-1.4, 1.4)) * 0.23 * height
    return k, head


def _draw_person(
    rng: np.random.Generator, k: np.ndarray, head: np.ndarray, height: float, h: int, w: int
) -> np.ndarray:
    """The person's part map: ``HxW`` uint8, 0 outside it, else the part drawn on top there."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)

    def limb(a: int, b: int, width: float, part: int) -> None:
        p, q = tuple(k[a]), tuple(k[b])
        draw.line([p, q], fill=part, width=max(2, round(width)))
        for x, y in (p, q):  # round joints
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=part)

    def dot(x: float, y: float, radius: float, part: int) -> None:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=part)

    def pair(limbs: list[tuple[tuple[int, int], tuple[int, int], int]], width: float) -> None:
        for first, second, part in limbs if rng.random() < 0.5 else limbs[::-1]:
            limb(*first, width * height, part)
            limb(*second, width * height, part)

    pair([((11, 13), (13, 15), _LEG_L), ((12, 14), (14, 16), _LEG_R)], 0.075)
    draw.polygon([tuple(k[j]) for j in (5, 6, 12, 11)], fill=_TORSO)
    pair([((5, 7), (7, 9), _ARM_L), ((6, 8), (8, 10), _ARM_R)], 0.055)
    r = 0.07 * height
    neck = (k[5] + k[6]) / 2
    draw.line([tuple(neck), tuple(head)], fill=_TORSO, width=max(2, round(0.045 * height)))
    dot(*head, r, _HEAD)
    for eye in (k[1], k[2]):
        dot(*eye, max(0.6, 0.16 * r), _EYE)
    dot(*k[0], max(0.6, 0.14 * r), _NOSE)
    return np.asarray(canvas)


def _colours(rng: np.random.Generator) -> dict[int, np.ndarray]:
    """One person's part colours: side hues, a shirt and a skin, with its own brightness."""
    light = rng.uniform(0.65, 1.15)
    jitter = rng.normal(0, 10, size=3)
    skin = _SKINS[rng.integers(len(_SKINS))]
    return {
        _TORSO: _SHIRTS[rng.integers(len(_SHIRTS))] * light + jitter,
        _HEAD: skin + jitter,
        _ARM_L: LEFT_HUE * light + jitter,
        _ARM_R: RIGHT_HUE * light + jitter,
        _LEG_L: LEFT_HUE * light * 0.75 + jitter,
        _LEG_R: RIGHT_HUE * light * 0.75 + jitter,
        _EYE: np.array([25.0, 25.0, 30.0]),
        _NOSE: skin * 0.7,
    }


def _scene(rng: np.random.Generator, h: int, w: int, max_people: int):
    """One image (``HxWx3`` uint8) and its people as ``(visible mask, [17, 3] keypoints)``,
    back to front."""
    canvas = Image.fromarray(np.clip(_background(rng, h, w), 0, 255).astype(np.uint8))
    _clutter(rng, ImageDraw.Draw(canvas), h, w)
    image = np.asarray(canvas, dtype=np.float64).copy()
    unit = min(h, w) / 128
    figures: list[tuple[np.ndarray, np.ndarray]] = []
    previous: tuple[np.ndarray, float] | None = None
    for _ in range(int(rng.integers(1, max_people + 1))):
        height = rng.uniform(35, 110) * unit
        if previous is not None and rng.random() < NEAR_P:
            step = rng.uniform(0.15, 0.5) * (height + previous[1]) * rng.choice([-1, 1])
            hip = previous[0] + [step, rng.normal(0, 0.1 * height)]
        else:
            hip = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.3, 0.75) * h])
        hip = np.clip(hip, [0, 0], [w - 1, h - 1])
        points, head = _pose(rng, hip, height)
        parts = _draw_person(rng, points, head, height, h, w)
        noise = rng.normal(0, 10, size=(h, w, 3))
        for part, colour in _colours(rng).items():
            where = parts == part
            image[where] = colour + noise[where]
        figures.append((parts > 0, points))
        previous = (hip, height)
    people = []
    front = np.zeros((h, w), dtype=bool)  # everyone drawn after (in front of) this person
    for silhouette, points in reversed(figures):
        visible = silhouette & ~front
        keypoints = np.zeros((NUM_KEYPOINTS, 3))
        for j, (x, y) in enumerate(points):
            if 0 <= x < w and 0 <= y < h and rng.random() >= UNLABELLED_P:
                keypoints[j] = x, y, 1 if front[int(y), int(x)] else 2
        if rng.random() < UNANNOTATED_P:
            keypoints[:] = 0
        front |= silhouette
        if visible.any():
            people.append((visible, keypoints))
    return np.clip(image, 0, 255).astype(np.uint8), people[::-1]


def _annotation(number: int, image_id: int, visible: np.ndarray, keypoints: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(visible.astype(np.uint8)))
    keypoints = np.round(keypoints, 2)
    return {
        "id": number,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
        "area": float(coco_mask.area(rle)),
        "bbox": [float(v) for v in coco_mask.toBbox(rle)],
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "keypoints": [float(v) if j % 3 < 2 else int(v) for j, v in enumerate(keypoints.ravel())],
    }


def make_synthetic_people(
    root: str | Path,
    *,
    num_train: int = 300,
    num_val: int = 60,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    max_people: int = 4,
) -> Path:
    """Write ``num_train + num_val`` images of 1 to ``max_people`` stick-figure people
    (``size`` = height, width) in the COCO keypoints layout under ``root``; the same seed
    writes the same files."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
    }
    image_id = annotation_id = 0
    for split, count in (("train", num_train), ("val", num_val)):
        folder = root / f"{split}2017"
        folder.mkdir(exist_ok=True)
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            picture, people = _scene(rng, h, w, max_people)
            name = f"{image_id:012d}.png"
            Image.fromarray(picture).save(folder / name, compress_level=1)
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
            for visible, keypoints in people:
                annotation_id += 1
                annotations.append(_annotation(annotation_id, image_id, visible, keypoints))
        spec = {
            "info": {"description": f"atrous synthetic people, seed {seed}"},
            "images": images,
            "annotations": annotations,
            "categories": [category],
        }
        path = root / "annotations" / f"person_keypoints_{split}2017.json"
        path.write_text(json.dumps(spec))
    return root
