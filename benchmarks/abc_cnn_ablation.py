"""ABC-CNN (Chen et al. 2015) against the same network without attention on the shape-QA set
(:mod:`atrous.data.synthetic_qa`): does question-guided attention by configurable
convolution answer better, and does its attention fall on the object the question is about?

Every row has the same budget: the demo's data (3,000 training scenes from the row's seed,
300 held-out scenes from seed + 1000), model (MobileNetV2 width 0.5 at OS8, 64-channel
features with two coordinate channels, LSTM question encoder, 256-unit classifier), Adam 1e-3,
batch 32 and steps (:data:`atrous.demo_vqa.STEPS`). ``attention``: ABC-CNN as built
(attention-weighted features + pooled features + question); ``no_attention``: the classifier
sees the pooled features and the question alone (``use_attention=False``). Attention IoU:
:func:`atrous.metrics.vqa.attention_iou` against each question's object mask (count
questions: the union of the counted shapes; "zero" answers left out). A uniform map scores
about k / (2 HW - k) (0.02 to 0.1 for these objects).

Run by hand, pinned to one core (about 6 minutes a row, 25 in all):
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/abc_cnn_ablation.py --seeds 0 1
    python benchmarks/abc_cnn_ablation.py --table
Each row appends a line to benchmarks/results/abc_cnn_ablation.jsonl; --table writes
benchmarks/results/abc_cnn.md from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from atrous.data.synthetic_qa import QUESTION_TYPES, make_shape_qa
from atrous.demo_vqa import (
    BATCH,
    LR,
    NUM_TRAIN,
    NUM_VAL,
    STEPS,
    VAL_SEED_OFFSET,
    evaluate_vqa,
    train_vqa,
)

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "abc_cnn_ablation.jsonl"
VARIANTS = {"attention": True, "no_attention": False}


def run_row(variant: str, seed: int, steps: int) -> dict:
    train_set = make_shape_qa(NUM_TRAIN, seed=seed)
    val_set = make_shape_qa(NUM_VAL, seed=seed + VAL_SEED_OFFSET)
    start = time.perf_counter()
    model, task, losses = train_vqa(
        train_set, use_attention=VARIANTS[variant], steps=steps, seed=seed, device="cpu"
    )
    seconds = time.perf_counter() - start
    metrics = evaluate_vqa(model, task, val_set)
    return {
        "variant": variant,
        "seed": seed,
        **metrics,
        "last_loss": statistics.mean(losses[-50:]),
        "train_seconds": round(seconds, 1),
        "steps": steps,
        "batch": BATCH,
        "lr": LR,
        "num_train_questions": len(train_set),
        "num_val_questions": len(val_set),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


HEADER = """# ABC-CNN: question-guided attention vs none, on the shape-QA set

`benchmarks/abc_cnn_ablation.py` (its docstring; what the numbers say: docs/vqa.md). Same
data, model, Adam 1e-3, batch 32 and {steps} steps per row; single-threaded on one core.
Cells: mean (seed 0, seed 1), percent. Attention IoU: the attention map's top-k pixels
(k = the object mask's area) against the mask of the object the question is about; a
uniform map scores 2-10 %.
"""


def _cell(rows: list[dict], get) -> str:
    values = [100 * get(r) for r in rows]
    spread = f" ({', '.join(f'{v:.1f}' for v in values)})" if len(values) > 1 else ""
    return f"{statistics.mean(values):.1f}{spread}"


def table() -> str:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    latest: dict[tuple[str, int], dict] = {}
    for row in rows:  # a rerun replaces its earlier row
        latest[(row["variant"], row["seed"])] = row
    out = [HEADER.format(steps=rows[-1]["steps"])]
    out.append("| model | accuracy | " + " | ".join(QUESTION_TYPES) + " | attention IoU | "
               "IoU per type (" + ", ".join(QUESTION_TYPES) + ") | train s |")  # fmt: skip
    out.append("|---" * (len(QUESTION_TYPES) + 5) + "|")
    for variant in VARIANTS:
        group = [r for (v, _), r in sorted(latest.items()) if v == variant]
        if not group:
            continue
        cells = [_cell(group, lambda r: r["accuracy"])]
        cells += [_cell(group, lambda r, t=t: r["per_type"][t]) for t in QUESTION_TYPES]
        if "attention_iou" in group[0]:
            cells.append(_cell(group, lambda r: r["attention_iou"]))
            per_type = [statistics.mean(100 * r["attention_iou_per_type"][t] for r in group)
                        for t in QUESTION_TYPES]  # fmt: skip
            cells.append(", ".join(f"{v:.1f}" for v in per_type))
        else:
            cells += ["-", "-"]
        cells.append(f"{statistics.mean(r['train_seconds'] for r in group):.0f}")
        out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--table", action="store_true", help="write abc_cnn.md from the rows")
    args = parser.parse_args()
    if args.table:
        (RESULTS / "abc_cnn.md").write_text(table())
        print(table())
        return
    for seed in args.seeds:
        for variant in args.variants:
            row = run_row(variant, seed, args.steps)
            with ROWS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(variant, seed, f"accuracy {100 * row['accuracy']:.1f}",
                  f"attention IoU {100 * row.get('attention_iou', float('nan')):.1f}",
                  f"{row['train_seconds']} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
