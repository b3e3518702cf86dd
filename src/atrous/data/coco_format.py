"""The COCO panoptic format, read and checked where it enters: a JSON of ``images``,
``annotations`` (one per image: ``image_id``, ``file_name`` of its PNG, ``segments_info``) and
``categories``, beside PNGs whose segment id per pixel is ``R + 256 G + 256^2 B`` (0 =
unlabeled).

Every problem is one :class:`~atrous.errors.DataError` naming the file and the key or id, as
panopticapi's ``pq_compute`` refuses them: a segment in the PNG without a ``segments_info``
entry, an entry whose segment is not in the PNG, an annotation of an image that ``images`` does
not list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._pairs import open_image, read_json

UNLABELED = 0
"""The segment id of pixels that belong to no segment (panopticapi's ``VOID``)."""

_LAYOUT = "a COCO panoptic JSON holds images, annotations and categories"


def _shown(values: Sequence[Any]) -> str:
    more = f" ... ({len(values)} in all)" if len(values) > 10 else ""
    return ", ".join(map(str, values[:10])) + more


def _twice(values: Sequence[Any]) -> list[Any]:
    return sorted((v for v, n in Counter(values).items() if n > 1), key=str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _records(
    data: dict[str, Any], key: str, path: Path, fields: Sequence[str], id_field: str
) -> list[dict]:
    """``data[key]``: a list of objects, each with ``fields`` and an integer ``id_field`` (or a
    string, for image ids: Cityscapes' panoptic JSONs name their images)."""
    kinds = (int, str) if id_field == "image_id" or key == "images" else (int,)
    records = data.get(key)
    if not isinstance(records, list):
        found = "missing" if records is None else f"a {type(records).__name__}"
        raise DataError(f"{path}: '{key}' is {found}, expected a list ({_LAYOUT})")
    for number, record in enumerate(records):
        absent = [f for f in fields if not isinstance(record, dict) or f not in record]
        if absent:
            raise DataError(
                f"{path}: {key}[{number}] has no {', '.join(map(repr, absent))} "
                f"(each of {key} needs {', '.join(fields)})"
            )
        if not isinstance(record[id_field], kinds) or isinstance(record[id_field], bool):
            expected = " or a ".join(k.__name__ for k in kinds)
            raise DataError(
                f"{path}: {key}[{number}] has {id_field} {record[id_field]!r}, expected an "
                f"{expected}"
            )
    return records


def _segments(path: Path, ann: dict[str, Any], number: int) -> None:
    where = f"{path}: annotations[{number}] (image {ann['image_id']!r})"
    segments = ann["segments_info"]
    if not isinstance(segments, list):
        raise DataError(f"{where}: segments_info is a {type(segments).__name__}, expected a list")
    for k, segment in enumerate(segments):
        if not isinstance(segment, dict) or "id" not in segment or "category_id" not in segment:
            raise DataError(f"{where}: segments_info[{k}] needs 'id' and 'category_id'")
        for key in ("id", "category_id"):
            if not _is_int(segment[key]):
                raise DataError(f"{where}: segments_info[{k}] {key} {segment[key]!r} is not an int")
    twice = _twice([s["id"] for s in segments])
    if twice:
        raise DataError(f"{where}: segment ids {_shown(twice)} are listed twice in segments_info")


def read_coco_panoptic(
    path: str | Path, *, need: Sequence[str] = ("images", "annotations", "categories")
) -> dict[str, Any]:
    """The JSON in ``path``, its structure checked: the lists in ``need`` present (a prediction
    file may hold only ``annotations``), each record with its keys, every annotation's
    ``image_id`` listed in ``images`` (when present) and no image annotated twice."""
    path = Path(path)
    data = read_json(path, "COCO panoptic annotations")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise DataError(f"{path}: top level is a {kind}, expected an object ({_LAYOUT})")
    if "categories" in need or "categories" in data:
        categories = _records(data, "categories", path, ("id", "name"), "id")
        twice = _twice([c["id"] for c in categories])
        if twice:
            raise DataError(f"{path}: category ids {_shown(twice)} are listed twice")
    images = None
    if "images" in need or "images" in data:
        images = {im["id"] for im in _records(data, "images", path, ("id", "file_name"), "id")}
    fields = ("image_id", "file_name", "segments_info")
    annotations = _records(data, "annotations", path, fields, "image_id")
    for number, ann in enumerate(annotations):
        if images is not None and ann["image_id"] not in images:
            raise DataError(
                f"{path}: annotations[{number}] ({ann['file_name']}) has image_id "
                f"{ann['image_id']!r}, which 'images' does not list"
            )
        _segments(path, ann, number)
    twice = _twice([a["image_id"] for a in annotations])
    if twice:
        raise DataError(f"{path}: images {_shown(twice)} have more than one annotation")
    return data


def read_segment_ids(png: str | Path, segments: Sequence[dict[str, Any]]) -> np.ndarray:
    """The ``HxW`` int64 segment ids of a COCO panoptic PNG, checked against its
    ``segments_info``: every id in the PNG but 0 (unlabeled) has an entry and every entry's id
    is in the PNG; else a :class:`DataError` names the PNG and the ids."""
    image = open_image(png, "panoptic PNG")
    if image.mode not in ("RGB", "RGBA", "P"):
        raise DataError(
            f"{png}: panoptic PNG has mode {image.mode!r}; expected an RGB PNG of segment ids "
            "R + 256 G + 256^2 B"
        )
    rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    present = set(np.unique(ids).tolist())
    listed = {s["id"] for s in segments}
    unlisted = sorted(present - listed - {UNLABELED})
    if unlisted:
        raise DataError(
            f"{png}: segment ids {_shown(unlisted)} are in the PNG but not in its segments_info "
            "(add their entries, or paint those pixels 0 = unlabeled)"
        )
    absent = sorted(listed - present)
    if absent:
        raise DataError(
            f"{png}: segments_info lists ids {_shown(absent)} that are not in the PNG "
            "(remove those entries, or the PNG is not the one they describe)"
        )
    return ids
