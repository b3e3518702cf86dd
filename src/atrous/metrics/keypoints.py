"""COCO person metrics for bottom-up pose (PersonLab, Papandreou et al., 2018): the object
keypoint similarity (OKS), and keypoint AP (by OKS) and person mask AP through pycocotools'
``COCOeval``, so the numbers are COCO's own (101-point interpolated precision, averaged over
the thresholds 0.50:0.05:0.95; at most 20 people per image for keypoints, 100 for masks).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from ..data.person_keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, OKS_SIGMAS, SKELETON

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


def _array(value: Any, name: str, dtype: type) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of {dtype.__name__}: {error}") from None


def _keypoints(value: Any, name: str, leading: tuple[int, ...] = ()) -> np.ndarray:
    """``value`` as float64 ``[*leading, K, 3]``; a ``[..., K, 2]`` input gets a third column
    of ones (a prediction's keypoint scores, which OKS does not read)."""
    k = _array(value, name, np.float64)
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
    p = _array(predicted, "predicted", np.float64)
    t = _array(truth, "truth", np.float64)
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


def _encode(masks: np.ndarray) -> list[dict[str, Any]]:
    """COCO's compressed RLE of boolean masks ``[N, H, W]`` (pycocotools wants ``[H, W, N]``
    uint8 in Fortran order)."""
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def _truth(truth: dict[str, Any], size: tuple[int, int], where: str) -> list[dict[str, Any]]:
    """One image's ground-truth people as COCO annotations (no ids yet)."""
    for key in ("keypoints", "masks", "iscrowd"):
        if key not in truth:
            raise KeyError(f"{where}: truth has no {key!r} (keys: {sorted(truth)})")
    masks = _array(truth["masks"], f"{where}: truth['masks']", bool)
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
    crowd = _array(truth["iscrowd"], f"{where}: truth['iscrowd']", bool).reshape(-1)
    rles = _encode(masks) if people else []
    area = truth.get("area")
    areas = (
        np.asarray(mask_utils.area(rles) if people else [], np.float64) if area is None else
        _array(area, f"{where}: truth['area']", np.float64).reshape(-1)
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
        mask = _array(person["mask"], f"{where}['mask']", bool)
        if mask.shape != tuple(size):
            raise ValueError(f"{where}['mask'] must be {list(size)}, got {list(mask.shape)}")
        rle = _encode(mask[None])[0]
    score = float(person["score"])
    if not math.isfinite(score):
        raise ValueError(f"{where}['score'] is {score}")
    return {"keypoints": keypoints.reshape(-1).tolist(), "score": score, "segmentation": rle}


def _evaluate(
    images: list[dict[str, Any]],
    truth: list[dict[str, Any]],
    results: list[dict[str, Any]],
    iou_type: str,
) -> tuple[list[float], str]:
    """COCOeval's ``stats`` (-1, "nothing to average", as 0.0) and its summary text."""
    if not truth or not results:
        missing = "ground-truth people" if not truth else "predictions"
        return [0.0] * 12, f"no {missing}: every {iou_type} AP is 0.0\n"
    categories = [{
        "id": _PERSON, "name": "person", "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES), "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
    }]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        gt = COCO()
        gt.dataset = {"images": images, "annotations": truth, "categories": categories}
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.summarize()
    return [max(float(s), 0.0) for s in evaluation.stats], summary.getvalue()


class PersonAP:
    """COCO keypoint AP (by OKS) and person mask AP over images, through pycocotools.

    ``update`` keeps each image's people (masks as RLE); ``compute`` builds an in-memory COCO
    data set and runs ``COCOeval`` twice ("keypoints", "segm"). Crowd people and people with
    no labelled keypoint (for keypoint AP) are ignored, as COCO does: a prediction matched to
    one is neither a hit nor a false positive. Image ids are the caller's and must be unique.
    OKS scales by each person's area (COCO's: the mask's), so a person with keypoints but an
    empty mask needs an explicit ``"area"``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.summary = ""
        self._ids: set[int] = set()

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
        if image_id in self._ids:
            raise ValueError(f"{where} was added twice: image ids must be unique")
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
        self.records.append(record)
        self._ids.add(image_id)

    def merge(self, other: PersonAP) -> PersonAP:
        """Add another accumulator's images (e.g. another process's); ids must not repeat."""
        shared = self._ids & other._ids
        if shared:
            raise ValueError(f"cannot merge: both accumulators hold images {sorted(shared)[:5]}")
        self.records.extend(other.records)
        self._ids |= other._ids
        return self

    def all_reduce(self, device: torch.device) -> None:
        """Gather every process's images into each (a no-op when torch.distributed is not
        initialised); under NCCL the exchange goes through ``device``."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        gathered: list[Any] = [None] * dist.get_world_size()
        device = torch.device(device)
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            dist.all_gather_object(gathered, self.records)
        records = [record for part in gathered for record in part]
        ids = [record["id"] for record in records]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"images {twice} were evaluated by more than one process")
        self.records, self._ids = records, set(ids)

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
            stats[iou_type], text = _evaluate(images, [dict(t) for t in truth], results, iou_type)
            texts.append(f"{'masks' if iou_type == 'segm' else iou_type}:\n{text}")
        self.summary = "".join(texts)
        metrics: dict[str, Any] = {k: stats[t][i] for k, (t, i) in _KEYS.items()}
        metrics["images"] = len(self.records)
        metrics["people"] = sum(not t["iscrowd"] for t in truth)
        metrics["predictions"] = len(points)
        return metrics
