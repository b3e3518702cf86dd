"""Deep structured models (Chen, Schwing, Yuille & Urtasun, ICML 2015): unary-only vs piecewise
vs nested joint vs blended joint training, on the words task (noisy rendered 5-letter words,
MLP unaries + one 26 x 26 table on the chain) and on synthetic tagging (12 co-occurring tags,
small-CNN unaries + a 2 x 2 table per tag pair, fully connected).

Every row of a task has the same budget: the same data (data seed 0), model, optimiser (Adam),
batch 32 and number of epochs; the training seed is the row's. After each epoch the held-out
set is scored (its time is not counted), so each row also holds accuracy against training time.
Unary-only rows are scored from the unaries alone (their pairwise tables stay zero); the other
rows by max-product decoding of unaries and tables together.

Run by hand, pinned to one core (about 10 minutes in all):
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/structured_ablation.py --task words
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/structured_ablation.py --task tags
    python benchmarks/structured_ablation.py --table
Each row appends a line to benchmarks/results/structured_ablation.jsonl; --table writes
benchmarks/results/structured.md from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from atrous.data.mirflickr import make_synthetic_tags
from atrous.data.words import make_noisy_words
from atrous.structured.learners import LEARNERS, fit, predict
from atrous.structured.metrics import hamming_error, word_metrics
from atrous.structured.tagging import TagModel, tag_graph
from atrous.structured.words import WordModel, word_graph

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "structured_ablation.jsonl"
TASKS = {
    "words": {"train": 10_000, "test": 1_000, "epochs": 20, "lr": 2e-3},
    "tags": {"train": 3_000, "test": 500, "epochs": 15, "lr": 3e-3},
}
"""Per task: training and held-out examples, epochs and Adam's learning rate (every row)."""
NESTED = {"max_passes": 100, "tol": 1e-4}
"""Nested learner: BP from zero messages until no message moves by 1e-4 (at most 100 passes)."""


def _data(task: str):
    spec = TASKS[task]
    if task == "words":
        train, test = (
            make_noisy_words(spec["train"], seed=0),
            make_noisy_words(spec["test"], seed=1000),
        )
        return train.images, train.labels, test.images, test.labels, word_graph()
    train, test = (
        make_synthetic_tags(spec["train"], seed=0),
        make_synthetic_tags(spec["test"], seed=1000),
    )
    return train.images, train.tags, test.images, test.tags, tag_graph(train.tags.shape[1])


def _score(task: str, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    if task == "words":
        return word_metrics(pred, target)
    return {"hamming_error": hamming_error(pred, target)}


def run_row(task: str, learner_name: str, seed: int, data) -> dict:
    """Train one learner for the task's epochs, scoring the held-out set after each."""
    x, y, x_test, y_test, graph = data
    spec = TASKS[task]
    torch.manual_seed(seed)
    model = WordModel() if task == "words" else TagModel(y.shape[1], width=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    extra = {"num_examples": len(x)} if learner_name == "blended" else {}
    extra.update(NESTED if learner_name == "nested" else {})
    learner = LEARNERS[learner_name](model, graph, optimizer, **extra)
    curve, elapsed = [], 0.0
    for epoch in range(spec["epochs"]):
        elapsed += fit(learner, x, y, epochs=1, batch_size=32, seed=seed * 1000 + epoch)[0]
        pred = predict(model, graph, x_test, unary_only=learner_name == "unary")
        curve.append(
            {"epoch": epoch + 1, "seconds": round(elapsed, 2), **_score(task, pred, y_test)}
        )
    return {
        "task": task,
        "learner": learner_name,
        "seed": seed,
        **{k: v for k, v in curve[-1].items() if k not in ("epoch", "seconds")},
        "seconds_per_epoch": round(elapsed / spec["epochs"], 3),
        "train_seconds": round(elapsed, 2),
        "message_store_bytes": learner.memory_bytes(),
        "epochs": spec["epochs"],
        "num_train": len(x),
        "num_test": len(x_test),
        "curve": curve,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


HEADER = """# Deep structured models: unary-only vs piecewise vs nested vs blended

`benchmarks/structured_ablation.py` (its docstring; what the numbers say: docs/structured.md).
Per task the same data (seed 0), model, Adam, batch 32 and epochs; one row per training seed,
single-threaded on one core, rows one after another (a short test run shared the core during
the words nested seed-0 row: its time is high). Cells: mean (seed 0, seed 1). Last column:
seconds of training until the held-out metric first reaches 95% of the blended rows' final word
accuracy (words) or comes within 5% of their Hamming error (tags); "-" when a row never does.
"""


def _mean(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows]
    return f"{100 * statistics.mean(values):.2f}" + (
        f" ({', '.join(f'{100 * v:.2f}' for v in values)})" if len(values) > 1 else ""
    )


def _reach(rows: list[dict], key: str, target: float, lower: bool) -> str:
    """Seconds of training until the held-out metric first reaches ``target`` (mean over
    seeds; '-' if a seed never does)."""
    times = []
    for r in rows:
        hit = [
            c["seconds"] for c in r["curve"] if (c[key] <= target if lower else c[key] >= target)
        ]
        if not hit:
            return "-"
        times.append(hit[0])
    return f"{statistics.mean(times):.1f}"


def table(rows: list[dict]) -> str:
    """Markdown tables: per task and learner, the metrics at the end (mean (seed values)), time
    per epoch, and time to reach 95% of the blended row's final metric."""
    out = []
    for task, keys in (("words", ("char_accuracy", "word_accuracy")), ("tags", ("hamming_error",))):
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        lower = task == "tags"
        key = keys[-1]
        blended = [r[key] for r in task_rows if r["learner"] == "blended"]
        target = statistics.mean(blended) * (1.05 if lower else 0.95) if blended else None
        head = " | ".join(k.replace("_", " ") + " %" for k in keys)
        label = (
            f"s to {'<=' if lower else '>='} {100 * target:.1f} {key.replace('_', ' ')}"
            if target
            else "s to target"
        )
        out += [
            f"### {task}",
            "",
            f"| learner | seeds | {head} | s / epoch | {label} |",
            "|---" * (4 + len(keys)) + "|",
        ]
        for name in LEARNERS:
            group = sorted((r for r in task_rows if r["learner"] == name), key=lambda r: r["seed"])
            if not group:
                continue
            seeds = ", ".join(str(r["seed"]) for r in group)
            cells = " | ".join(_mean(group, k) for k in keys)
            per_epoch = statistics.mean(r["seconds_per_epoch"] for r in group)
            reach = _reach(group, key, target, lower) if target else "-"
            out.append(f"| {name} | {seeds} | {cells} | {per_epoch:.2f} | {reach} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--table", action="store_true", help="write structured.md from the rows")
    args = parser.parse_args()
    if args.task:
        torch.set_num_threads(1)
        data = _data(args.task)
        for seed in args.seeds:
            for name in args.learners:
                start = time.perf_counter()
                row = run_row(args.task, name, seed, data)
                with ROWS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{args.task} {name} seed {seed}: {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    if args.table:
        rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
        (RESULTS / "structured.md").write_text(HEADER + "\n" + table(rows) + "\n")
        print(table(rows))


if __name__ == "__main__":
    main()
