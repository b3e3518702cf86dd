"""MaskLab's ablation (Chen et al., CVPR 2018) on the demo's 60 held-out synthetic scenes: the
mask head with the semantic crop only, + direction pooling, + hypercolumn refinement (the full
head), each trained from scratch with the demo's recipe and budget (same data, seed shown per
row); every trained model is scored on its own detections and again on the ground-truth boxes
(the head's ceiling, no detection errors), where the mask IoU of each object is split by
whether it touches another object of its class, the case direction features are for.

Run by hand (about 6 minutes a row on 2 cores):
    python benchmarks/masklab_ablation.py --variant full --seed 0
    python benchmarks/masklab_ablation.py --pictures      # after the seed-0 rows
Each row appends one line to benchmarks/results/masklab_ablation.jsonl and keeps its
checkpoint under benchmarks/runs/masklab/ (not committed) for the pictures;
benchmarks/results/masklab.md is written by hand from those lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atrous.data import build_dataset
from atrous.data.synthetic_instances import touching_pairs
from atrous.demo_tasks import run_masklab_demo
from atrous.inference import Predictor, draw_instances
from atrous.metrics import InstanceAP

HERE = Path(__file__).parent
RESULTS = HERE / "results"
RUNS = HERE / "runs" / "masklab"
VARIANTS = {
    "semantic_crop": ["model.direction_pooling=false", "model.hypercolumn=false"],
    "direction": ["model.hypercolumn=false"],
    "full": [],
    "hypercolumn_only": ["model.direction_pooling=false"],
}
"""Row name -> the demo recipe's overrides: the paper's ablation order, then the control that
tells the two additions apart (hypercolumn refinement without direction pooling)."""


def _truth(target: dict) -> dict:
    keep = ~target["iscrowd"].bool()
    return {
        "boxes": target["boxes"].as_subclass(torch.Tensor)[keep].float(),
        "labels": target["labels"][keep],
        "masks": target["masks"].as_subclass(torch.Tensor)[keep].bool(),
    }


def ground_truth_boxes(predictor: Predictor, val_set) -> dict:
    """Mask AP with the ground-truth boxes, and the mean mask IoU of objects touching another
    of their class and of the other objects."""
    ap = InstanceAP(predictor.model.num_classes)
    ious: dict[str, list[float]] = {"touching": [], "alone": []}
    for index in range(len(val_set)):
        image, target = val_set[index]
        truth = _truth(target)
        x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
        with torch.no_grad():
            (found,) = predictor.model.segment_boxes(x, [truth["boxes"]], [truth["labels"]])
        found = {key: value.cpu() for key, value in found.items()}
        size = tuple(image.shape[-2:])
        ap.update(int(target["image_id"]), size, target, found)
        touching = {i for pair in touching_pairs(truth["masks"], truth["labels"]) for i in pair}
        for i, (mask, pred) in enumerate(zip(truth["masks"], found["masks"] >= 0.5, strict=True)):
            iou = float((mask & pred).sum() / (mask | pred).sum().clamp(min=1))
            ious["touching" if i in touching else "alone"].append(iou)
    m = ap.compute()
    return {
        "gt_mask_ap": m["mask_ap"],
        "gt_mask_ap75": m["mask_ap75"],
        "iou_touching": float(np.mean(ious["touching"])),
        "iou_alone": float(np.mean(ious["alone"])),
        "objects_touching": len(ious["touching"]),
        "objects_alone": len(ious["alone"]),
    }


def run_row(variant: str, seed: int) -> dict:
    out = RUNS / f"{variant}_seed{seed}"
    if out.exists():
        shutil.rmtree(out)
    result = run_masklab_demo(out, seed=seed, progress=False, overrides=VARIANTS[variant])
    predictor = Predictor.from_checkpoint(result["checkpoint"], device="cpu")
    val_set = build_dataset("coco_instances", out / "data", "val")
    m = result["metrics"]
    row = {
        "variant": variant, "seed": seed, "overrides": VARIANTS[variant],
        "mask_ap": m["mask_ap"], "mask_ap50": m["mask_ap50"], "mask_ap75": m["mask_ap75"],
        "box_ap": m["box_ap"], "box_ap50": m["box_ap50"], "miou": m["miou"],
        **ground_truth_boxes(predictor, val_set),
        "seconds": round(result["seconds"], 1), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    shutil.rmtree(out / "data")
    return row


def _big(instances: dict, scale: int) -> dict:
    """Instances drawn on a ``scale`` times larger picture (labels stay readable)."""
    masks = instances["masks"].repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    return {**instances, "boxes": instances["boxes"] * scale, "masks": masks}


def pictures(seed: int = 0, count: int = 4, scale: int = 2) -> Path:
    """image | truth | each variant's masks on the ground-truth boxes, for the first ``count``
    held-out scenes with touching objects of one class, under a header naming the columns:
    benchmarks/results/masklab_ablation.png."""
    from PIL import ImageDraw

    from atrous.data import make_synthetic_instances

    root = make_synthetic_instances(RUNS / "pictures_data", seed=seed)
    val_set = build_dataset("coco_instances", root, "val")
    predictors = {
        v: Predictor.from_checkpoint(RUNS / f"{v}_seed{seed}" / "checkpoint.pt", device="cpu")
        for v in VARIANTS
        if (RUNS / f"{v}_seed{seed}" / "checkpoint.pt").is_file()
    }
    classes = val_set.info.classes
    rows = []
    for index in range(len(val_set)):
        image, target = val_set[index]
        truth = _truth(target)
        if not touching_pairs(truth["masks"], truth["labels"]):
            continue
        array = image.permute(1, 2, 0).numpy()
        big = array.repeat(scale, 0).repeat(scale, 1)
        shown = {**truth, "scores": torch.ones(len(truth["labels"]))}
        cells = [big, draw_instances(big, _big(shown, scale), classes)]
        for predictor in predictors.values():
            x = predictor.normalize(image).unsqueeze(0)
            with torch.no_grad():
                (found,) = predictor.model.segment_boxes(x, [truth["boxes"]], [truth["labels"]])
            masks = {**shown, "masks": found["masks"] >= 0.5}
            cells.append(draw_instances(big, _big(masks, scale), classes))
        rows.append(np.concatenate(cells, axis=1))
        if len(rows) == count:
            break
    grid = np.concatenate(rows, axis=0)
    header = Image.new("RGB", (grid.shape[1], 18), "white")
    draw = ImageDraw.Draw(header)
    cell = grid.shape[1] // (2 + len(predictors))
    for i, name in enumerate(["image", "ground truth", *predictors]):
        draw.text((i * cell + 4, 3), name.replace("_", " "), fill="black")
    picture = np.concatenate([np.asarray(header), grid], axis=0)
    path = RESULTS / "masklab_ablation.png"
    Image.fromarray(picture).save(path)
    shutil.rmtree(root)
    return path


COLUMNS = {
    "mask_ap": "mask AP", "mask_ap75": "mask AP75", "box_ap": "box AP", "miou": "mIoU",
    "gt_mask_ap": "mask AP, GT boxes", "iou_touching": "IoU touching, GT boxes",
    "iou_alone": "IoU alone, GT boxes",
}  # fmt: skip


def table(path: Path = RESULTS / "masklab_ablation.jsonl") -> str:
    """The rows as a markdown table (percent), one line per variant and seed, then the mean
    over seeds."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head = ["variant", "seed", *COLUMNS.values(), "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in VARIANTS:
        mine = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["seed"])
        for r in mine:
            cells = [f"{100 * r[k]:.2f}" for k in COLUMNS]
            lines.append(
                f"| {variant} | {r['seed']} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |"
            )
        if len(mine) > 1:
            cells = [f"**{100 * np.mean([r[k] for r in mine]):.2f}**" for k in COLUMNS]
            lines.append(f"| {variant} | mean | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the results as markdown")
    args = parser.parse_args()
    if args.table:
        print(table())
        return
    if args.pictures:
        print(pictures(args.seed))
        return
    if args.variant is None:
        parser.error("give --variant or --pictures")
    row = run_row(args.variant, args.seed)
    print(json.dumps(row))
    with (RESULTS / "masklab_ablation.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
