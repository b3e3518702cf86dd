"""Weak annotations: image-level labels and bounding boxes, their readers and checks, and the
box-derived label maps of Papandreou et al. (ICCV 2015): Bbox-Rect, and Bbox-Seg's unary (its
dense CRF step sits in :mod:`atrous.tasks.em`, above the CRF).

Formats: image labels ``{stem: [class name or id, ...]}`` (JSON); boxes ``{stem: [[x0, y0, x1,
y1, class], ...]}`` (JSON, pixel corners, x1/y1 exclusive) or PASCAL VOC ``Annotations/*.xml``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._pairs import read_json

Box = tuple[int, int, int, int, int]  # x0, y0, x1, y1 (exclusive), class id


def _class_id(value: object, classes: Sequence[str], where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(classes):
            raise DataError(f"{where}: class id {value} outside [0, {len(classes)})")
        return value
    if isinstance(value, str) and value in classes:
        return classes.index(value)
    raise DataError(f"{where}: unknown class {value!r}; classes: {', '.join(classes)}")


def _number(value: object, where: str, what: str) -> float:
    """A finite pixel coordinate: a JSON number, or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"{where}: {what} {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {what} is {value!r}; a box corner must be a finite number")
    return number


def _mapping(raw: object, path: Path, shape: str) -> dict:
    if not isinstance(raw, dict):
        raise DataError(
            f"{path}: top level is a {type(raw).__name__}; expected an object {shape} keyed by "
            "image stem"
        )
    return raw


def read_image_labels(path: str | Path, classes: Sequence[str]) -> dict[str, list[int]]:
    """``{stem: sorted class ids}`` from a JSON of class names or ids per image."""
    path = Path(path)
    raw = _mapping(read_json(path, "image labels"), path, '{"stem": [class, ...]}')
    out = {}
    for stem, values in raw.items():
        where = f"{path} [{stem}]"
        if not isinstance(values, list):
            raise DataError(f"{where}: expected a list of class names or ids, got {values!r}")
        out[str(stem)] = sorted({_class_id(v, classes, where) for v in values})
    return out


def read_boxes(path: str | Path, classes: Sequence[str]) -> dict[str, list[Box]]:
    """``{stem: [(x0, y0, x1, y1, class id), ...]}`` from a boxes JSON or a VOC
    ``Annotations`` folder (one ``<stem>.xml`` per image; VOC's 1-based inclusive corners).
    Coordinates must be finite numbers; anything else is a :class:`DataError` naming the file,
    the image and the box."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise DataError(f"{path}: no *.xml annotations (a VOC Annotations folder)")
        return {xml.stem: _voc_boxes(xml, classes) for xml in found}
    raw = _mapping(read_json(path, "boxes"), path, '{"stem": [[x0, y0, x1, y1, class], ...]}')
    out: dict[str, list[Box]] = {}
    for stem, boxes in raw.items():
        where = f"{path} [{stem}]"
        if not isinstance(boxes, list):
            raise DataError(f"{where}: expected a list of [x0, y0, x1, y1, class], got {boxes!r}")
        parsed = []
        for number, box in enumerate(boxes):
            if not isinstance(box, (list, tuple)) or len(box) != 5:
                raise DataError(
                    f"{where}: box {number} is {box!r}; a box is [x0, y0, x1, y1, class]"
                )
            x0, y0, x1, y1 = (
                int(round(_number(v, f"{where} box {number}", k)))
                for v, k in zip(box[:4], ("x0", "y0", "x1", "y1"), strict=True)
            )
            parsed.append((x0, y0, x1, y1, _class_id(box[4], classes, f"{where} box {number}")))
        out[str(stem)] = parsed
    return out


def _voc_boxes(path: Path, classes: Sequence[str]) -> list[Box]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DataError(f"{path}: unreadable annotation ({err})") from None
    boxes = []
    for number, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"{path} object {number} ({name!r})"
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{where}: no bndbox")
        corners = []
        for key in ("xmin", "ymin", "xmax", "ymax"):
            text = bb.findtext(key)
            if text is None or not text.strip():
                raise DataError(f"{where}: bndbox has no {key}")
            corners.append(int(_number(text.strip(), where, key)))
        x0, y0, x1, y1 = corners
        boxes.append((x0 - 1, y0 - 1, x1, y1, _class_id(name, classes, where)))
    return boxes


def check_annotations(
    stems: Sequence[str],
    sizes: Mapping[str, tuple[int, int]],
    *,
    boxes: Mapping[str, Sequence[Box]] | None = None,
    image_labels: Mapping[str, Sequence[int]] | None = None,
    where: str = "annotations",
) -> list[str]:
    """Every problem, one line each naming the image: boxes outside the image or empty, images
    without any annotation, annotations for images that do not exist."""
    problems = []
    known = set(stems)
    given = {**(image_labels or {}), **(boxes or {})}
    for stem in sorted(set(given) - known):
        problems.append(f"{where}: {stem!r} is annotated but is not an image of the split")
    for stem in stems:
        if stem not in given:
            problems.append(f"{where}: {stem!r} has no annotation")
    for stem, items in (boxes or {}).items():
        if stem not in sizes:
            continue
        h, w = sizes[stem]
        for x0, y0, x1, y1, cls in items:
            if x1 <= x0 or y1 <= y0:
                problems.append(f"{where}: {stem!r} box {[x0, y0, x1, y1]} (class {cls}) is empty")
            elif x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                problems.append(
                    f"{where}: {stem!r} box {[x0, y0, x1, y1]} (class {cls}) leaves the "
                    f"{w}x{h} image"
                )
    return problems


def _by_area(boxes: Sequence[Box]) -> list[Box]:
    """Largest first, so that smaller boxes are pasted over larger ones."""
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def bbox_rect(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """Bbox-Rect: every pixel inside a box takes its class (the smaller box wins where boxes
    overlap), the rest background 0. ``HxW`` uint8."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for x0, y0, x1, y1, cls in _by_area(boxes):
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = cls
    return mask


def _eroded(x0: int, y0: int, x1: int, y1: int, keep: float) -> tuple[int, int, int, int]:
    """The box eroded by a 3x3 square (one pixel per side and step) until under ``keep`` of its
    area, as the released code erodes box masks; small boxes (under 121 pixels or 10 pixels a
    side) keep no core."""
    h, w = y1 - y0, x1 - x0
    if h * w < 121 or h < 10 or w < 10:
        return (x0, y0, x0, y0)
    k = 0
    while (h - 2 * k) * (w - 2 * k) >= keep * h * w and h - 2 * k > 2 and w - 2 * k > 2:
        k += 1
    return (x0 + k, y0 + k, x1 - k, y1 - k)


def bbox_seg_unary(
    boxes: Sequence[Box], height: int, width: int, num_classes: int, *, core: float = 0.2
) -> np.ndarray:
    """Bbox-Seg's unary ``[C, H, W]`` probabilities: background 1 outside every box; inside a
    box 0.5 class / 0.5 background, in its eroded core (about ``core`` of its area; the code's
    erode_scale 0.2 + 0.05) 0.75 / 0.25; smaller boxes pasted over larger ones."""
    probs = np.zeros((num_classes, height, width), dtype=np.float32)
    probs[0] = 1.0
    for x0, y0, x1, y1, cls in _by_area(boxes):
        for (a0, b0, a1, b1), p in (
            ((x0, y0, x1, y1), 0.5),
            (_eroded(x0, y0, x1, y1, core + 0.05), 0.75),
        ):
            rows, cols = slice(max(0, b0), max(0, b1)), slice(max(0, a0), max(0, a1))
            probs[:, rows, cols] = 0.0
            probs[0, rows, cols] = 1.0 - p
            probs[cls, rows, cols] = p
    return probs


def box_allowed(boxes: Sequence[Box], height: int, width: int, num_classes: int) -> np.ndarray:
    """``[C, H, W]`` bool: background everywhere, and each box's class inside the box (the
    classes EM with boxes may assign to a pixel)."""
    allowed = np.zeros((num_classes, height, width), dtype=bool)
    allowed[0] = True
    for x0, y0, x1, y1, cls in boxes:
        allowed[cls, max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return allowed


def boxes_from_instances(semantic: np.ndarray, instance: np.ndarray) -> list[Box]:
    """The tight box of every (class > 0, instance > 0) region: boxes a user would have drawn
    for the objects of a panoptic mask (for experiments that derive weak labels from masks)."""
    boxes = []
    valid = (semantic > 0) & (semantic < 255) & (instance > 0)
    for cls, inst in sorted(
        {(int(c), int(i)) for c, i in zip(semantic[valid], instance[valid], strict=True)}
    ):
        ys, xs = np.nonzero(valid & (semantic == cls) & (instance == inst))
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, cls))
    return boxes
