"""COCO panoptic format in and out: ``panoptic_*.json`` (images, categories, per-image
``segments_info``) beside a folder of PNGs whose segment id per pixel is ``R + 256 G + 256^2 B``.

:func:`score_coco_panoptic` scores a folder of predictions in that format against ground truth in
it (``atrous eval --panoptic``) with :class:`~atrous.metrics.PanopticQuality` and
:class:`~atrous.metrics.ParsingCovering`; :func:`write_coco_panoptic` writes atrous's panoptic id
maps in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.coco_format import read_coco_panoptic, read_segment_ids
from ..errors import DataError
from ..metrics import PanopticQuality, ParsingCovering

VOID = 255
DIVISOR = 1000


def _ids(
    png: Path, segments: list[dict[str, Any]], index: Mapping[int, int], things: set[int]
) -> np.ndarray:
    """A COCO panoptic PNG -> ``class * 1000 + instance`` (crowd: instance 0, unlabeled: void).

    Every segment of the PNG must have its ``segments_info`` entry and every entry its pixels
    (:func:`~atrous.data.coco_format.read_segment_ids`), as panopticapi requires: a segment
    without an entry would otherwise turn void without a word and move PQ."""
    segment = read_segment_ids(png, segments)
    out = np.full(segment.shape, VOID * DIVISOR, dtype=np.int64)
    counters: dict[int, int] = {}
    for info in sorted(segments, key=lambda s: s["id"]):
        if info["category_id"] not in index:
            raise DataError(
                f"{png}: segment {info['id']} has category_id {info['category_id']}, which the "
                "ground truth's categories do not list"
            )
        cls = index[info["category_id"]]
        number = 0
        if cls in things and not info.get("iscrowd", 0):
            counters[cls] = number = counters.get(cls, 0) + 1
        out[segment == info["id"]] = cls * DIVISOR + number
    return out


def score_coco_panoptic(
    gt_json: str | Path,
    pred_json: str | Path,
    *,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
) -> dict[str, Any]:
    """PQ / SQ / RQ (all, things, stuff) and Parsing Covering of the predictions against the
    ground truth, both in COCO panoptic format (PNG folders default to the JSON's path without
    ``.json``). Images are matched by ``image_id``; a ground-truth image without a prediction is
    an error naming it."""
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt = read_coco_panoptic(gt_json, need=("annotations", "categories"))
    pred = read_coco_panoptic(pred_json, need=("annotations",))
    gt_folder = Path(gt_folder or gt_json.with_suffix(""))
    pred_folder = Path(pred_folder or pred_json.with_suffix(""))
    categories = sorted(gt["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(categories)}
    things = {i for i, c in enumerate(categories) if c.get("isthing")}
    predictions = {a["image_id"]: a for a in pred["annotations"]}
    pq = PanopticQuality(len(categories), label_divisor=DIVISOR, thing_classes=things)
    pc = ParsingCovering(len(categories), label_divisor=DIVISOR, thing_classes=things)
    for ann in gt["annotations"]:
        if ann["image_id"] not in predictions:
            raise DataError(
                f"{pred_json}: no prediction for image {ann['image_id']} ({ann['file_name']})"
            )
        mine = predictions[ann["image_id"]]
        target = _ids(gt_folder / ann["file_name"], ann["segments_info"], index, things)
        guess = _ids(pred_folder / mine["file_name"], mine["segments_info"], index, things)
        if guess.shape != target.shape:
            where = pred_folder / mine["file_name"]
            raise DataError(f"{where}: size {guess.shape}, ground truth {target.shape}")
        pq.update(guess, target)
        pc.update(guess, target)
    quality, covering = pq.compute(), pc.compute()
    return {
        "pq": quality["pq"], "sq": quality["sq"], "rq": quality["rq"], "pc": covering["pc"],
        "things": {**quality["things"], "pc": covering["things"]["pc"]},
        "stuff": {**quality["stuff"], "pc": covering["stuff"]["pc"]},
        "images": len(gt["annotations"]),
        "classes": [c["name"] for c in categories],
    }  # fmt: skip


def write_coco_panoptic(
    maps: Iterable[tuple[str, np.ndarray]],
    out_json: str | Path,
    classes: list[str],
    thing_classes: Iterable[int],
    label_divisor: int = DIVISOR,
) -> Path:
    """Write ``(image name, class * divisor + instance map)`` pairs in COCO panoptic format:
    ``out_json`` and the PNGs in ``out_json`` without ``.json``; categories are the classes with
    ids 1, 2, ... (0 is unlabeled)."""
    out_json = Path(out_json)
    folder = out_json.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    things = set(thing_classes)
    images, annotations = [], []
    for image_id, (name, ids) in enumerate(maps, start=1):
        ids = np.asarray(ids, dtype=np.int64)
        segment = np.zeros(ids.shape, dtype=np.int64)
        infos = []
        for number, value in enumerate(
            sorted(set(np.unique(ids).tolist()) - {VOID * label_divisor}), start=1
        ):
            cls = value // label_divisor
            where = ids == value
            segment[where] = number
            crowd = int(cls in things and value % label_divisor == 0)
            infos.append(
                {"id": number, "category_id": cls + 1, "iscrowd": crowd, "area": int(where.sum())}
            )
        stem = Path(name).stem
        rgb = np.stack([segment % 256, segment // 256 % 256, segment // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{stem}.png")
        images.append(
            {"id": image_id, "file_name": name, "height": ids.shape[0], "width": ids.shape[1]}
        )
        annotations.append(
            {"image_id": image_id, "file_name": f"{stem}.png", "segments_info": infos}
        )
    categories = [
        {"id": i + 1, "name": c, "isthing": int(i in things)} for i, c in enumerate(classes)
    ]
    out_json.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return out_json
