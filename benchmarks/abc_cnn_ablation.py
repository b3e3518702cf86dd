"""ABC-CNN (Chen et al. 2015) against the same network without attention on the shape-QA set
(:mod:`atrous.data.synthetic_qa`): does question-guided attention by configurable
convolution answer better, and does its attention fall on the object the question is about?

Every row has the demo's budget and data (:mod:`atrous.demo_vqa`: 3,000 training scenes from
the seed, 300 held-out scenes from seed + 1000). Per seed, the features are pretrained once
(:func:`~atrous.demo_vqa.pretrain_features`: DeepLabv3, MobileNetV2 width 0.5 at OS8,
segmenting the training scenes into shape-and-colour classes; FEATURE_STEPS batches) and every
variant trains on them, frozen, for STEPS batches (Adam 1e-3, batch 32):

- ``attention``: ABC-CNN as built (attention-weighted features + pooled features + question);
- ``no_attention``: the classifier sees the pooled features and the question alone;
- ``coordinates``: ABC-CNN with two coordinate channels appended to the features (ours, not
  the paper's: the attended features then say where the object is).

Rows of the jsonl before the coordinates default turned off (2026-12-08) carry a
"coordinates" key; their variants were renamed to these names.

Attention IoU: :func:`atrous.metrics.vqa.attention_iou` against each question's object mask
(count questions: the union of the counted shapes; "zero" answers left out). A uniform map
scores about k / (2 HW - k) (0.02 to 0.1 for these objects).

Run by hand, pinned to one core (about 7 minutes a seed, features included):
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/abc_cnn_ablation.py --seeds 0 1 2
    python benchmarks/abc_cnn_ablation.py --table
Each row appends a line to benchmarks/results/abc_cnn_ablation.jsonl; --table writes
benchmarks/results/abc_cnn.md from it. Rows without a "features" key are an earlier setup:
ABC-CNN trained end to end from scratch, 1000 steps, no pretraining.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from atrous.data.synthetic_qa import QUESTION_TYPES, SEGMENTATION_CLASSES, make_shape_qa
from atrous.demo_vqa import (
    BACKBONE_KEYS,
    BATCH,
    FEATURE_STEPS,
    LR,
    MODEL_OPTIONS,
    NUM_TRAIN,
    NUM_VAL,
    STEPS,
    VAL_SEED_OFFSET,
    evaluate_vqa,
    feature_miou,
    pretrain_features,
    train_vqa,
)
from atrous.models import deeplabv3

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "abc_cnn_ablation.jsonl"
VARIANTS = {
    "attention": {"use_attention": True},
    "no_attention": {"use_attention": False},
    "coordinates": {"use_attention": True, "model_options": {"coordinates": True}},
}


def run_seed(
    seed: int, variants: list[str], steps: int, feature_steps: int, cache: Path | None
) -> None:
    train_set = make_shape_qa(NUM_TRAIN, seed=seed)
    val_set = make_shape_qa(NUM_VAL, seed=seed + VAL_SEED_OFFSET)
    saved = cache / f"features-seed{seed}-steps{feature_steps}.pt" if cache else None
    start = time.perf_counter()
    if saved is not None and saved.is_file():  # the same seed and steps give the same net
        features = deeplabv3(**{k: MODEL_OPTIONS[k] for k in BACKBONE_KEYS},
                             num_classes=len(SEGMENTATION_CLASSES))  # fmt: skip
        state = torch.load(saved, weights_only=True)
        features.load_state_dict(state["model"])
        features.eval()
        feature_seconds = state["seconds"]
    else:
        features, _ = pretrain_features(train_set, steps=feature_steps, seed=seed, device="cpu")
        feature_seconds = time.perf_counter() - start
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": features.state_dict(), "seconds": feature_seconds}, saved)
    miou = feature_miou(features, val_set)
    print(f"seed {seed}: features mIoU {100 * miou:.1f} in {feature_seconds:.0f} s", flush=True)
    for variant in variants:
        row = run_row(variant, seed, steps, train_set, val_set, features.backbone)
        row.update(coordinates=VARIANTS[variant].get("model_options", {}).get("coordinates", False))
        row.update(features="segmentation, frozen", feature_steps=feature_steps,
                   feature_miou=miou, feature_seconds=round(feature_seconds, 1))  # fmt: skip
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(variant, seed, f"accuracy {100 * row['accuracy']:.1f}",
              f"attention IoU {100 * row.get('attention_iou', float('nan')):.1f}",
              f"{row['train_seconds']} s", flush=True)  # fmt: skip


def run_row(variant: str, seed: int, steps: int, train_set, val_set, backbone) -> dict:
    start = time.perf_counter()
    model, task, losses = train_vqa(
        train_set, **VARIANTS[variant], backbone=backbone, steps=steps, seed=seed, device="cpu"
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

`benchmarks/abc_cnn_ablation.py` (its docstring; what the numbers say: docs/vqa.md). Per
seed the features are pretrained once ({feature_steps} steps of segmentation, held-out mIoU
{miou}) and every row trains on them, frozen: same data, Adam 1e-3, batch 32 and {steps}
steps per row; single-threaded on one core. Cells: mean (one value per seed: {seeds}),
percent. Attention IoU: the attention map's top-k pixels (k = the object mask's area)
against the mask of the object the question is about; a uniform map scores 2-10 %. Train s:
the ABC-CNN stage alone (the features took about 370 s a seed); the attention and
coordinates rows of seeds 0 and 1 ran before the frozen backbone's maps were computed once
per scene, which made the later rows about 3x faster.
"""

SCRATCH = """
## Earlier setup: end to end from scratch

No pretraining: the whole ABC-CNN (MobileNetV2 width 0.5 included, coordinate channels on)
trained from scratch, 1000 steps, Adam 1e-3, batch 32. Neither variant learns to see the
shapes (object questions at chance, a third), and the attention stays about uniform. The
attention row's seed 1 was not run.
"""


def _cell(rows: list[dict], get) -> str:
    values = [100 * get(r) for r in rows]
    spread = f" ({', '.join(f'{v:.1f}' for v in values)})" if len(values) > 1 else ""
    return f"{statistics.mean(values):.1f}{spread}"


def table() -> str:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    pretrained = [r for r in rows if "features" in r]
    last = pretrained[-1]  # the table shows the rows of the last run's budget
    pretrained = [r for r in pretrained if (r["steps"], r["feature_steps"]) ==
                  (last["steps"], last["feature_steps"])]  # fmt: skip
    seeds = sorted({r["seed"] for r in pretrained})
    mious = {r["seed"]: 100 * r["feature_miou"] for r in pretrained}
    header = HEADER.format(
        steps=pretrained[-1]["steps"], feature_steps=pretrained[-1]["feature_steps"],
        miou=", ".join(f"{mious[s]:.1f}" for s in seeds), seeds=", ".join(map(str, seeds)),
    )  # fmt: skip
    scratch = [r for r in rows if "features" not in r]
    return _rows(pretrained, header) + SCRATCH + "\n" + _rows(scratch, "").lstrip("\n")


def _rows(rows: list[dict], header: str) -> str:
    latest: dict[tuple[str, int], dict] = {}
    for row in rows:  # a rerun replaces its earlier row
        latest[(row["variant"], row["seed"])] = row
    out = [header]
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
    parser.add_argument("--feature-steps", type=int, default=FEATURE_STEPS)
    parser.add_argument("--cache", type=Path, help="keep each seed's pretrained features here")
    parser.add_argument("--table", action="store_true", help="write abc_cnn.md from the rows")
    args = parser.parse_args()
    if args.table:
        (RESULTS / "abc_cnn.md").write_text(table())
        print(table())
        return
    for seed in args.seeds:
        run_seed(seed, args.variants, args.steps, args.feature_steps, args.cache)


if __name__ == "__main__":
    main()
