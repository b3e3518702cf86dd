"""COCO person metrics for bottom-up pose (PersonLab, Papandreou et al., 2018): the object
keypoint similarity (OKS), and keypoint AP (by OKS) and person mask AP through pycocotools'
``COCOeval``, so the numbers are COCO's own (101-point interpolated precision, averaged over
the thresholds 0.50:0.05:0.95; at most 20 people per image for keypoints, 100 for masks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from torch import Tensor

from ..data.person_keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, OKS_SIGMAS, SKELETON
from ._cocoeval import ImageRecords, as_array, encode, evaluate

_PERSON = 1  # the category id of COCO's "person"
_EPS = float(np.spacing(1))  # pycocotools adds it to the area before dividing
_KEYS = {  # our name -> (iouType, index into COCOeval.stats)
    "keypoint_ap": ("keypoints", 0),
    "keypoint_ap50": ("keypoints", 1),
    "keypoint_ap75": ("keypoints", 2),
    "keypoint_apm": ("keypoints", 3),
    "keypoint_apl": ("keypoints", 4),
    "mask_ap": ("segm", 0),
    "mask_ap50": ("segm", 1),
    "mask_ap75": ("segm", 2),
}


def _keypoints(value: Any, name: str, leading: tuple[int, ...] = ()) -> np.ndarray:
    """``value`` as float64 ``[*leading, K, 3]``; a ``[..., K, 2]`` input gets a third column
    of ones (a prediction's keypoint scores, which OKS does not read)."""
    k = as_array(value, name, np.float64)
    if k.shape[:-1] != (*leading, NUM_KEYPOINTS) or k.shape[-1] not in (2, 3):
        want = ", ".join(str(n) for n in (*leading, NUM_KEYPOINTS))
        raise ValueError(f"{name} must be [{want}, 3] (x, y, v), got {list(k.shape)}")
    if k.shape[-1] == 2:
        k = np.concatenate([k, np.ones_like(k[..., :1])], axis=-1)
    if not np.isfinite(k).all():
        raise ValueError(f"{name} holds non-finite values")
    return k


def oks(
    predicted: Tensor | np.ndarray,
    truth: Tensor | np.ndarray,
    area: float,
    sigmas: Sequence[float] = OKS_SIGMAS,
) -> float:
    """The object keypoint similarity of one prediction ``[K, 2 or 3]`` with one person
    ``[K, 3]`` (x, y, visibility) of ``area`` pixels, as pycocotools ``computeOks``.

    The mean, over the labelled (v > 0) keypoints, of ``exp(-d^2 / (2 (area + eps)
    (2 sigma / 10)^2))``; ``sigmas`` are COCO's, times 10. A person with no labelled keypoint
    raises: COCOeval scores one by the distance to twice its box, and ignores it anyway.
    """
    var = (2 * np.asarray(sigmas, dtype=np.float64) / 10) ** 2
    p = as_array(predicted, "predicted", np.float64)
    t = as_array(truth, "truth", np.float64)
    if t.shape != (len(var), 3) or p.shape not in ((len(var), 2), (len(var), 3)):
        raise ValueError(
            f"oks takes predicted [{len(var)}, 2 or 3] and truth [{len(var)}, 3] (one per "
            f"sigma), got {list(p.shape)} and {list(t.shape)}"
        )
    labelled = t[:, 2] > 0
    if not labelled.any():
        raise ValueError("truth has no labelled keypoint (v > 0): OKS is undefined for it")
    d2 = ((p[:, :2] - t[:, :2]) ** 2).sum(axis=1)
    e = d2 / var / (float(area) + _EPS) / 2
    return float(np.exp(-e[labelled]).mean())


def _truth(truth: dict[str, Any], size: tuple[int, int], where: str) -> list[dict[str, Any]]:
    """One image's ground-truth people as COCO annotations (no ids yet)."""
    for key in ("keypoints", "masks", "iscrowd"):
        if key not in truth:
            raise KeyError(f"{where}: truth has no {key!r} (keys: {sorted(truth)})")
    masks = as_array(truth["masks"], f"{where}: truth['masks']", bool)
    if masks.size == 0 and masks.shape[0] == 0:  # no people: any empty shape will do
        masks = masks.reshape(0, *size)
    if masks.ndim != 3 or masks.shape[1:] != tuple(size):
        raise ValueError(
            f"{where}: truth['masks'] must be [P, {size[0]}, {size[1]}] (P people at the "
            f"image's size), got {list(masks.shape)}"
        )
    people = masks.shape[0]
    keypoints = truth["keypoints"] if people else np.zeros((0, NUM_KEYPOINTS, 3))
    if np.shape(keypoints)[-1:] != (3,):  # a [P, 17, 2] input would read as all labelled
        raise ValueError(f"{where}: truth['keypoints'] must be [P, 17, 3] (x, y, visibility)")
    keypoints = _keypoints(keypoints, f"{where}: truth['keypoints']", (people,))
    crowd = as_array(truth["iscrowd"], f"{where}: truth['iscrowd']", bool).reshape(-1)
    rles = encode(masks) if people else []
    area = truth.get("area")
    areas = (
        np.asarray(mask_utils.area(rles) if people else [], np.float64) if area is None else
        as_array(area, f"{where}: truth['area']", np.float64).reshape(-1)
    )  # fmt: skip
    if len(crowd) != people or len(areas) != people:
        raise ValueError(
            f"{where}: truth holds {people} masks but {len(crowd)} iscrowd flags and "
            f"{len(areas)} areas (one each per person)"
        )
    return [
        {
            "keypoints": keypoints[i].reshape(-1).tolist(),
            "num_keypoints": int((keypoints[i, :, 2] > 0).sum()),
            "segmentation": rles[i],
            "area": float(areas[i]),
            "bbox": mask_utils.toBbox(rles[i]).tolist(),
            "iscrowd": int(crowd[i]),
        }
        for i in range(people)
    ]


def _prediction(person: dict[str, Any], size: tuple[int, int], where: str) -> dict[str, Any]:
    """One predicted person as a COCO result (its mask as RLE, or None)."""
    if "keypoints" not in person or "score" not in person:
        raise KeyError(f"{where}: a person needs 'keypoints' and 'score' (got {sorted(person)})")
    keypoints = _keypoints(person["keypoints"], f"{where}['keypoints']")
    rle = None
    if person.get("mask") is not None:
        mask = as_array(person["mask"], f"{where}['mask']", bool)
        if mask.shape != tuple(size):
            raise ValueError(f"{where}['mask'] must be {list(size)}, got {list(mask.shape)}")
        rle = encode(mask[None])[0]
    score = float(person["score"])
    if not math.isfinite(score):
        raise ValueError(f"{where}['score'] is {score}")
    return {"keypoints": keypoints.reshape(-1).tolist(), "score": score, "segmentation": rle}


_CATEGORIES = [{
    "id": _PERSON, "name": "person", "supercategory": "person",
    "keypoints": list(KEYPOINT_NAMES), "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
}]  # fmt: skip


class PersonAP(ImageRecords):
    """COCO keypoint AP (by OKS) and person mask AP over images, through pycocotools.

    ``update`` keeps each image's people (masks as RLE); ``compute`` builds an in-memory COCO
    data set and runs ``COCOeval`` twice ("keypoints", "segm"). Crowd people and people with
    no labelled keypoint (for keypoint AP) are ignored, as COCO does: a prediction matched to
    one is neither a hit nor a false positive. Image ids are the caller's and must be unique.
    OKS scales by each person's area (COCO's: the mask's), so a person with keypoints but an
    empty mask needs an explicit ``"area"``.
    """

    def update(
        self,
        image_id: int,
        size: tuple[int, int],
        truth: dict[str, Any],
        people: Sequence[dict[str, Any]],
    ) -> None:
        """Add one image of ``size`` (H, W): its ground truth ``{"keypoints": [P, 17, 3] (x, y,
        v in 0/1/2, pixels), "masks": bool [P, H, W], "iscrowd": bool [P], "area": [P]
        (optional, default the mask's)}`` and the predicted ``people``, each ``{"keypoints":
        [17, 3] (x, y, score), "score": float, "mask": bool [H, W] (optional: without one the
        person is left out of mask AP)}``."""
        image_id = int(image_id)
        where = f"image {image_id}"
        self._check_new(image_id)
        height, width = (int(n) for n in size)
        record = {
            "id": image_id,
            "height": height,
            "width": width,
            "truth": _truth(truth, (height, width), where),
            "people": [
                _prediction(p, (height, width), f"{where}: people[{i}]")
                for i, p in enumerate(people)
            ],
        }
        self._add(record)

    def compute(self) -> dict[str, Any]:
        """``keypoint_ap``, ``_ap50``, ``_ap75``, ``_apm``, ``_apl`` and ``mask_ap``, ``_ap50``,
        ``_ap75`` as fractions (0..1); ``images``, ``people`` (non-crowd ground truth) and
        ``predictions`` counts. An AP with nothing to average (no ground-truth people, no
        predictions, no person of that size) is 0.0, not COCO's -1. ``self.summary`` keeps
        COCOeval's printed summaries."""
        images = [{"id": r["id"], "height": r["height"], "width": r["width"]} for r in self.records]
        truth, points, masks = [], [], []
        for r in self.records:
            for person in r["truth"]:
                ids = {"id": len(truth) + 1, "image_id": r["id"], "category_id": _PERSON}
                truth.append({**person, **ids})
            for p in r["people"]:
                common = {"image_id": r["id"], "category_id": _PERSON, "score": p["score"]}
                points.append({**common, "keypoints": list(p["keypoints"])})
                if p["segmentation"] is not None:
                    masks.append({**common, "segmentation": dict(p["segmentation"])})
        stats, texts = {}, []
        for iou_type, results in (("keypoints", points), ("segm", masks)):
            fresh = [dict(t) for t in truth]
            stats[iou_type], text = evaluate(
                images, _CATEGORIES, fresh, results, iou_type, "ground-truth people"
            )
            texts.append(f"{'masks' if iou_type == 'segm' else iou_type}:\n{text}")
        self.summary = "".join(texts)
        metrics: dict[str, Any] = {k: stats[t][i] for k, (t, i) in _KEYS.items()}
        metrics["images"] = len(self.records)
        metrics["people"] = sum(not t["iscrowd"] for t in truth)
        metrics["predictions"] = len(points)
        return metrics
