"""Weak and semi-supervised training on the demo scenes (Papandreou et al., ICCV 2015), every row
at the same budget: full masks, semi-supervised (10% strong + boxes / + image labels), Bbox-Rect,
Bbox-Seg, EM-Fixed from boxes, EM-Fixed and EM-Adapt from image labels.

Run by hand (about 30 minutes on 2 CPU cores):  python benchmarks/weak.py [--steps 1500]
Boxes are the tight boxes of the demo's objects and image labels the classes present, both
derived from the panoptic masks (``make_synthetic_dataset(panoptic=True)``: the same scenes as
the demo); validation uses the full masks of the 60 held-out scenes. Recipe: the demo's
(DeepLabv3+ MobileNetV2, width 0.5, crop 96, batch 4, LR 0.035) for ``--steps`` steps, seed 0.
Writes benchmarks/results/weak.json / .md and docs/weak_estimates.png (image | ground truth |
the E-step estimate of EM-Fixed from boxes at each checkpoint, for two training scenes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atrous.data import make_synthetic_dataset
from atrous.data.boxes import boxes_from_instances
from atrous.data.palette import colorize
from atrous.demo import demo_config
from atrous.training import train

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
ROWS: dict[str, tuple[str, ...]] = {
    "full masks": (),
    "semi: 10% masks + boxes (EM-Fixed)": (
        "data.supervision=mixed",
        "weak.method=em_fixed",
        "BOXES",
    ),
    "semi: 10% masks + image labels (EM-Fixed)": (
        "data.supervision=mixed",
        "weak.method=em_fixed",
        "LABELS",
    ),
    "boxes: Bbox-Rect": ("data.supervision=boxes", "weak.method=rect", "BOXES"),
    "boxes: Bbox-Seg": ("data.supervision=boxes", "weak.method=seg", "BOXES"),
    "boxes: EM-Fixed": ("data.supervision=boxes", "weak.method=em_fixed", "BOXES"),
    "image labels: EM-Fixed": ("data.supervision=image_labels", "weak.method=em_fixed", "LABELS"),
    "image labels: EM-Adapt": ("data.supervision=image_labels", "weak.method=em_adapt", "LABELS"),
}


def _data(work: Path) -> Path:
    root = work / "data"
    if (root / "labels.json").is_file():
        return root
    make_synthetic_dataset(root, seed=0, panoptic=True)
    boxes, labels = {}, {}
    for stem in (root / "train.txt").read_text().split():
        semantic = np.array(Image.open(root / "masks" / f"{stem}.png"))
        instance = np.array(Image.open(root / "instances" / f"{stem}.png"))
        found = boxes_from_instances(semantic, instance)
        boxes[stem] = [list(b) for b in found]
        labels[stem] = sorted({b[4] for b in found})
    (root / "boxes.json").write_text(json.dumps(boxes))
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def run(row: str, steps: int, work: Path) -> dict[str, Any]:
    data = _data(work)
    out = work / row.replace(" ", "_").replace(":", "").replace("%", "").replace("(", "").replace(
        ")", ""
    )
    extra = []
    for item in ROWS[row]:
        if item == "BOXES":
            extra.append(f"data.boxes={data / 'boxes.json'}")
        elif item == "LABELS":
            extra.append(f"data.image_labels={data / 'labels.json'}")
        else:
            extra.append(item)
    estimates = ["train.save_estimates=2"] if row == "boxes: EM-Fixed" else []
    every = max(1, steps // 5)
    cfg = demo_config(out, [f"data.root={data}", f"train.steps={steps}", "train.log_every=100",
                            f"train.checkpoint_every={every}", *extra, *estimates])  # fmt: skip
    result = train(cfg, progress=False)
    if estimates:
        _picture(out, data)
    return {
        "miou": result["metrics"]["miou"],
        "pixel_accuracy": result["metrics"]["pixel_accuracy"],
    }


def _picture(out: Path, data: Path) -> None:
    steps = sorted((out / "estimates").iterdir())
    stems = sorted(p.stem for p in steps[0].iterdir())
    palette = json.loads((data / "classes.json").read_text()).get("palette")
    palette = np.asarray(palette, dtype=np.uint8) if palette else None
    rows = []
    for stem in stems:
        image = np.array(Image.open(data / "images" / f"{stem}.jpg").convert("RGB"))
        truth = np.array(Image.open(data / "masks" / f"{stem}.png"))
        panels = [image, colorize(truth, palette)]
        panels += [colorize(np.array(Image.open(s / f"{stem}.png")), palette) for s in steps]
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    DOCS.mkdir(exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(DOCS / "weak_estimates.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--work", default="/tmp/atrous-weak")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "weak.json"
    runs = json.loads(log.read_text()) if log.is_file() else []
    for row in args.rows:
        if any(r["row"] == row and r["steps"] == args.steps for r in runs):
            continue
        runs.append({"row": row, "steps": args.steps, **run(row, args.steps, Path(args.work))})
        print(json.dumps(runs[-1]), flush=True)
        log.write_text(json.dumps(runs, indent=1) + "\n")
        lines = [
            f"# Weak and semi-supervised training, demo scenes, {args.steps} steps, seed 0 "
            "(`python benchmarks/weak.py`)",
            "",
            "| supervision | mIoU | pixel accuracy |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['row']} | {100 * r['miou']:.2f} | {100 * r['pixel_accuracy']:.2f} |"
            for r in runs
            if r["steps"] == args.steps
        ]
        (RESULTS / "weak.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
