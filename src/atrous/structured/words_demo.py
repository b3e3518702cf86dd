"""``atrous demo --task words``: noisy rendered words, an MLP trained on letters alone (the
unary-only baseline) and the same MLP trained jointly with a letter-pair table by blending
learning and inference (Chen et al., ICML 2015, Algorithm 2); both scored on held-out words.

Budget (seed 0, 2 CPU threads: about a minute): 10,000 training words, 1,000 held-out ones,
30 epochs of batch 32 with Adam for each model (lr 2e-3, chosen on a seed-0 trial).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ..data.words import make_noisy_words
from .learners import BlendedLearner, UnaryLearner, fit, predict
from .metrics import word_metrics
from .words import WordModel, word_graph

NUM_TRAIN, NUM_TEST = 10_000, 1_000
EPOCHS, BATCH, LR = 30, 32, 2e-3
TEST_SEED_OFFSET = 1_000
"""Held-out words come from seed ``seed + 1000``: other draws, the same lexicon and fonts."""


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def run_words_demo(
    out: str | Path = "atrous-demo-words",
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    num_train: int = NUM_TRAIN,
    num_test: int = NUM_TEST,
) -> dict[str, Any]:
    """Train the unary-only and the blended joint word model (``steps`` each, default 30
    epochs), score both on held-out words and write ``out/metrics.json``. Returns
    ``{"metrics", "seconds"}``; metrics are fractions."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = _device(device)
    train = make_noisy_words(num_train, seed=seed)
    test = make_noisy_words(num_test, seed=seed + TEST_SEED_OFFSET)
    graph = word_graph(train.labels.shape[1])
    images, labels = train.images.to(dev), train.labels.to(dev)
    metrics: dict[str, Any] = {}
    for name, learner_cls in (("unary", UnaryLearner), ("joint", BlendedLearner)):
        torch.manual_seed(seed)
        model = WordModel().to(dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        extra = {"num_examples": num_train} if learner_cls is BlendedLearner else {}
        learner = learner_cls(model, graph, optimizer, **extra)
        seconds = fit(
            learner,
            images,
            labels,
            epochs=EPOCHS if steps is None else max(1, -(-steps * BATCH // num_train)),
            batch_size=BATCH,
            seed=seed,
            max_steps=steps,
            progress=progress,
            desc=f"words: {name}",
        )
        pred = predict(model, graph, test.images, unary_only=name == "unary")
        found = word_metrics(pred, test.labels)
        prefix = "unary_" if name == "unary" else ""
        metrics.update({prefix + k: v for k, v in found.items()})
        metrics[f"{name}_train_seconds"] = sum(seconds)
        if name == "joint":
            metrics["message_store_bytes"] = learner.memory_bytes()
    metrics.update({"num_train": num_train, "num_test": num_test, "seed": seed})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"metrics": metrics, "seconds": time.perf_counter() - start}


def words_report(result: dict[str, Any], out: str | Path) -> str:
    """The demo's table: character and word accuracy (%) of both models, and its time."""
    m = result["metrics"]
    rows = [
        ("unary only (MLP)", m["unary_char_accuracy"], m["unary_word_accuracy"]),
        ("joint (MLP + pair table, blended)", m["char_accuracy"], m["word_accuracy"]),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'model':<{width}}  char acc  word acc"]
    lines += [f"{name:<{width}}  {100 * c:8.2f}  {100 * w:8.2f}" for name, c, w in rows]
    lines.append(
        f"words demo: {m['num_test']} held-out words in {result['seconds']:.0f} s; "
        f"metrics.json in {out}"
    )
    return "\n".join(lines)
