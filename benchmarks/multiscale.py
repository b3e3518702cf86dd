"""Multi-scale learning on the demo data set: one scale, v2's MSC (max, avg), attention to scale
with and without extra supervision, at the same training budget.

Run by hand (about 15 minutes on 2 CPU cores):  python benchmarks/multiscale.py [--steps 1500]
Every row trains the demo recipe (DeepLabv3+ MobileNetV2 OS16, width 0.5, 128-channel head,
crop 96, batch 4, LR 0.035) for ``--steps`` steps on the demo scenes and is scored on the 60
held-out ones (mIoU, trimap mIoU at 2 px); s/step is training time (the median of the logged
100-step intervals), s/image evaluation time.
Scales are the paper's 1, 0.75, 0.5. Writes benchmarks/results/multiscale.json / .md and, for
the attention model, docs/attention.png (image | prediction | weight of each scale).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atrous.data import build_dataset, make_synthetic_dataset
from atrous.data.palette import colorize, heatmap
from atrous.demo import demo_config
from atrous.evaluation import Confusion, Trimap, evaluate
from atrous.inference import Predictor  # noqa: E402
from atrous.loader import load
from atrous.training import train

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
ATTENTION = "model.scale_attention={scales: [1.0, 0.75, 0.5], merge: attention}"
ROWS: dict[str, tuple[str, ...]] = {
    "single scale": (),
    "MSC max (v2)": ("model.scale_attention={scales: [1.0, 0.75, 0.5], merge: max}",),
    "MSC avg": ("model.scale_attention={scales: [1.0, 0.75, 0.5], merge: avg}",),
    "attention + extra supervision": (ATTENTION, "train.aux_weight=1.0"),
    "attention, no extra supervision": (ATTENTION, "train.aux_weight=0.0"),
}


def run(row: str, seed: int, steps: int, work: Path) -> dict[str, Any]:
    data = (
        make_synthetic_dataset(work / "data", seed=0)
        if not (work / "data").exists()
        else work / "data"
    )
    out = work / f"{row.replace(' ', '_').replace('+', 'p').replace(',', '')}-{seed}"
    cfg = demo_config(out, [f"data.root={data}", f"train.steps={steps}", f"train.seed={seed}",
                            "data.val_split=null", f"train.checkpoint_every={steps}",
                            "train.log_every=100", *ROWS[row]])  # fmt: skip
    start = time.perf_counter()
    result = train(cfg, progress=False)
    train_seconds = time.perf_counter() - start
    loaded = load(result["checkpoint"])
    n = len(loaded.info.classes)
    val = build_dataset("folder", data, "val", num_classes=n)
    predictor = Predictor.from_loaded(loaded)
    start = time.perf_counter()
    found = evaluate(predictor, val, {"m": Confusion(n), "t": Trimap(n, (2,))}, progress=False)
    eval_seconds = time.perf_counter() - start
    if row == "attention + extra supervision" and seed == 0:
        _picture(loaded, val, DOCS / "attention.png")
    # The median of the logged 100-step intervals: robust to other jobs sharing the cores.
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    intervals = [r["s_per_step"] for r in logged if "s_per_step" in r]
    return {
        "miou": found["m"]["miou"],
        "trimap_2px": found["t"]["2"],
        "s_per_step": float(np.median(intervals)) if intervals else train_seconds / steps,
        "s_per_image": eval_seconds / len(val),
    }


def _picture(loaded: Any, val: Any, path: Path, count: int = 4) -> None:
    """Rows of image | prediction | the weight of scale 1, 0.75 and 0.5 (yellow = high)."""
    predictor = Predictor.from_loaded(loaded)
    rows = []
    for index in range(count):
        image, _ = val[index]
        labels = predictor.predict(image).numpy()
        x = predictor.normalize(image).unsqueeze(0)
        maps = loaded.model.attention_maps(x)[0].numpy()
        panels = [image.permute(1, 2, 0).numpy(), colorize(labels, loaded.info.palette)]
        panels += [heatmap(m) for m in maps]
        gap = np.full((image.shape[1], 4, 3), 255, np.uint8)
        row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    DOCS.mkdir(exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def _cell(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    m = sum(values) / len(values)
    if len(values) == 1:
        return f"{scale * m:.{digits}f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return f"{scale * m:.{digits}f} ± {scale * sd:.{digits}f}"


def report(runs: list[dict[str, Any]], steps: int) -> str:
    lines = [
        f"# Multi-scale learning on the demo set, {steps} steps each "
        "(`python benchmarks/multiscale.py`)",
        "",
        "| row | seeds | mIoU | trimap 2 px | train s/step | eval s/image |",
        "|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        found = [r for r in runs if r["row"] == row and r["steps"] == steps]
        if found:
            lines.append(
                f"| {row} | {','.join(str(r['seed']) for r in found)} | "
                f"{_cell([r['miou'] for r in found])} | "
                f"{_cell([r['trimap_2px'] for r in found])} | "
                f"{_cell([r['s_per_step'] for r in found], 1, 3)} | "
                f"{_cell([r['s_per_image'] for r in found], 1, 3)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work", default="/tmp/atrous-multiscale")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "multiscale.json"
    runs = json.loads(log.read_text()) if log.is_file() else []
    for seed in args.seeds:
        for row in args.rows:
            key = {"row": row, "seed": seed, "steps": args.steps}
            if any(all(r.get(k) == v for k, v in key.items()) for r in runs):
                continue
            result = {**key, **run(row, seed, args.steps, Path(args.work))}
            print(json.dumps(result), flush=True)
            runs.append(result)
            log.write_text(json.dumps(runs, indent=1) + "\n")
            (RESULTS / "multiscale.md").write_text(report(runs, args.steps))


if __name__ == "__main__":
    main()
