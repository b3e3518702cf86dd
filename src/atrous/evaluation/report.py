"""Tables for a terminal: per-class IoU, refinements side by side, trimap bands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def format_table(result: dict[str, Any], classes: Sequence[str]) -> str:
    """A per-class IoU / accuracy table followed by the summary numbers, in percent."""
    width = max([len("class")] + [len(c) for c in classes])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}", "-" * (width + 16)]
    for name, iou, acc in zip(classes, result["iou"], result["accuracy"], strict=True):
        lines.append(f"{name:<{width}}  {_pct(iou):>6}  {_pct(acc):>6}")
    lines.append("-" * (width + 16))
    bad = result.get("nonfinite_scores")
    if bad:
        lines.insert(
            0,
            f"WARNING: the model's scores hold NaN or Inf on {bad['images']} image(s) (first: "
            f"{', '.join(bad['first'])}); these metrics count those pixels as noise",
        )
    for key, label in (
        ("miou", "mIoU"),
        ("pixel_accuracy", "pixel acc"),
        ("mean_accuracy", "mean acc"),
        ("fw_iou", "fwIoU"),
    ):
        lines.append(f"{label:<{width}}  {_pct(result[key]):>6}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def refinement_table(result: dict[str, Any]) -> str:
    """mIoU, trimap bands and seconds per image without and with each refinement."""
    widths = list(result.get("trimap", {}))
    head = f"{'refinement':<18}{'mIoU':>7}" + "".join(f"{'trimap ' + w + 'px':>13}" for w in widths)
    rows = [head + f"{'s/image':>9}"]
    for name, r in [("none", result), *result["refined"].items()]:
        bands = "".join(f"{100 * r['trimap'][w]:>13.2f}" for w in widths)
        seconds = f"{r['seconds_per_image']:>9.3f}" if "seconds_per_image" in r else f"{'-':>9}"
        rows.append(f"{name:<18}{100 * r['miou']:>7.2f}{bands}{seconds}")
    return "\n".join(rows)


def trimap_line(trimap: dict[str, float]) -> str:
    """``trimap mIoU by band width: 2px 61.2  5px ...``"""
    bands = "  ".join(f"{w}px {100 * m:.1f}" for w, m in trimap.items())
    return f"trimap mIoU by band width: {bands}"


def worst_images_line(records: list[dict[str, Any]], count: int = 5) -> str:
    return "worst images: " + ", ".join(
        f"{r['image']} ({100 * r['miou']:.1f})" for r in records[:count]
    )


def crf_search_table(found: dict[str, Any], rows: int = 5) -> str:
    """The best combinations of a CRF search, and the ``--set`` line that uses the best."""
    results = found["results"]
    keys = [k for k in results[0] if k != "miou"]
    lines = ["  ".join(f"{k:>12}" for k in keys) + f"{'mIoU':>8}"]
    for r in results[:rows]:
        lines.append("  ".join(f"{r[k]:>12g}" for k in keys) + f"{100 * r['miou']:>8.2f}")
    best = " ".join(f"refine.crf.{k}={results[0][k]:g}" for k in keys)
    lines.append(
        f"best of {len(results)}: mIoU {100 * results[0]['miou']:.2f} with the CRF, "
        f"{100 * found['miou_without_crf']:.2f} without; use: --crf --set {best}"
    )
    return "\n".join(lines)


def panoptic_table(result: dict[str, Any]) -> str:
    """PQ / SQ / RQ and Parsing Covering, all, things and stuff, in percent."""
    rows = [f"{'':<8}{'PQ':>7}{'SQ':>7}{'RQ':>7}{'PC':>7}"]
    for name, part in (("all", result), ("things", result["things"]), ("stuff", result["stuff"])):
        rows.append(
            f"{name:<8}" + "".join(f"{100 * part[k]:>7.2f}" for k in ("pq", "sq", "rq", "pc"))
        )
    return "\n".join(rows)


def people_table(result: dict[str, Any]) -> str:
    """COCO keypoint AP (by OKS) and person mask AP, in percent (PersonLab's evaluator)."""
    rows = [f"{'':<10}{'AP':>7}{'AP50':>7}{'AP75':>7}{'APm':>7}{'APl':>7}"]
    for name, prefix in (("keypoints", "keypoint_"), ("masks", "mask_")):
        cells = [
            f"{100 * result[prefix + k]:>7.2f}" if prefix + k in result else f"{'-':>7}"
            for k in ("ap", "ap50", "ap75", "apm", "apl")
        ]
        rows.append(f"{name:<10}" + "".join(cells))
    return "\n".join(rows)


def instances_table(result: dict[str, Any]) -> str:
    """COCO mask AP and box AP, in percent (the instance evaluator's, MaskLab's); a number the
    result lacks shows as "-"."""
    keys = ("ap", "ap50", "ap75", "aps", "apm", "apl")
    rows = [f"{'':<7}{'AP':>7}{'AP50':>7}{'AP75':>7}{'APs':>7}{'APm':>7}{'APl':>7}"]
    for name, prefix in (("masks", "mask_"), ("boxes", "box_")):
        cells = [
            f"{100 * result[prefix + k]:>7.2f}" if prefix + k in result else f"{'-':>7}"
            for k in keys
        ]
        rows.append(f"{name:<7}" + "".join(cells))
    return "\n".join(rows)


def size_table(result: dict[str, Any]) -> str:
    """Part mIoU by object size bucket, in percent, with each bucket's object count (the parts
    evaluator's ``miou_by_size`` and ``objects_by_size``); an empty bucket shows as "-"."""
    sizes = result["miou_by_size"]
    counts = result.get("objects_by_size", {})
    rows = [f"{'size':<6}{'mIoU':>8}{'objects':>9}"]
    for bucket, value in sizes.items():
        shown = f"{100 * value:>8.2f}" if value == value else f"{'-':>8}"  # nan: no object
        rows.append(f"{bucket:<6}{shown}{counts.get(bucket, 0):>9}")
    return "\n".join(rows)
