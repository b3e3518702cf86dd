"""Refinement cost at VOC size: both dense-CRF backends and the domain transform, one run.

Run by hand:  python benchmarks/refine.py [--size 513] [--classes 21] [--repeats 3]
Inputs: a synthetic scene (shapes on textured background, as in the demo data) with noisy
softmax scores around its true labels, and uniform noise (image and scores; the worst case for
the lattice, which then has about one vertex per pixel and corner). Times the C++ reference
(pydensecrf2) and our torch lattice, 10 mean-field iterations each, with their label agreement;
the DenseCRF layer's forward+backward; and the domain transform (3 iterations) forward and
forward+backward. Median of ``--repeats`` runs (the two CRF backends interleaved), on this
machine's CPU threads (and CUDA when present). Writes benchmarks/results/refine.json and refine.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atrous.data import make_synthetic_dataset
from atrous.refine import (
    CRFParams,
    DenseCRF,
    dense_crf,
    domain_transform,
    image_edges,
    reference_available,
)

RESULTS = Path(__file__).parent / "results"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scene(size: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(tmp, num_train=1, num_val=0, size_range=(size, size))
        stem = (root / "train.txt").read_text().split()[0]
        image = np.array(Image.open(root / "images" / f"{stem}.jpg").convert("RGB"))
        label = np.array(Image.open(root / "masks" / f"{stem}.png")).astype(np.int64) % classes
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (classes, size, size)).astype(np.float32)
    ys, xs = np.mgrid[:size, :size]
    logits[label, ys, xs] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(0)
    return image, probs.astype(np.float32)


def noise(size: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.random((classes, size, size)).astype(np.float32)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), probs / probs.sum(0)


def crf_rows(size: int, classes: int, repeats: int) -> list[dict[str, object]]:
    rows = []
    for name, make in (("synthetic scene", scene), ("uniform noise", noise)):
        image, probs = make(size, classes)
        row: dict[str, object] = {"input": name}
        ours = dense_crf(image, probs, backend="torch")
        if not reference_available():
            row["torch_cpu_s"] = median_seconds(
                partial(dense_crf, image, probs, backend="torch"), repeats
            )
        else:
            ref = dense_crf(image, probs, backend="reference")
            times: dict[str, list[float]] = {"torch": [], "reference": []}
            for _ in range(repeats):  # interleaved: this machine's speed drifts between runs
                for backend in times:
                    times[backend].append(
                        median_seconds(partial(dense_crf, image, probs, backend=backend), 1)
                    )
            row["torch_cpu_s"] = statistics.median(times["torch"])
            row["reference_cpu_s"] = statistics.median(times["reference"])
            row["label_agreement"] = float((ours.argmax(0) == ref.argmax(0)).mean())
            row["labels_changed_by_crf"] = float((ref.argmax(0) != probs.argmax(0)).mean())
            row["ratio"] = row["torch_cpu_s"] / row["reference_cpu_s"]
        if torch.cuda.is_available():
            image_c = torch.from_numpy(image).permute(2, 0, 1).cuda()
            probs_c = torch.from_numpy(probs).cuda()
            dense_crf(image_c, probs_c, backend="torch")
            row["torch_cuda_s"] = median_seconds(
                partial(dense_crf, image_c, probs_c, backend="torch"), repeats
            )
        rows.append(row)
    return rows


def layer_row(size: int, classes: int, repeats: int) -> dict[str, float]:
    image, probs = scene(size, classes)
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
    crf = DenseCRF(CRFParams())

    def step() -> None:
        logits = torch.from_numpy(probs).log()[None].requires_grad_()
        crf(logits, image_t).logsumexp(1).sum().backward()

    def forward() -> None:
        with torch.no_grad():
            crf(torch.from_numpy(probs).log()[None], image_t)

    return {
        "dense_crf_layer_forward_cpu_s": median_seconds(forward, repeats),
        "dense_crf_layer_forward_backward_cpu_s": median_seconds(step, repeats),
    }


def dt_row(size: int, classes: int, repeats: int) -> dict[str, float]:
    image, probs = scene(size, classes)
    edges = image_edges(torch.from_numpy(image).permute(2, 0, 1)[None])
    scores = torch.from_numpy(probs)[None]

    def forward_backward() -> None:
        x = scores.clone().requires_grad_()
        e = edges.clone().requires_grad_()
        domain_transform(x, e).sum().backward()

    return {
        "domain_transform_forward_cpu_s": median_seconds(
            lambda: domain_transform(scores, edges), repeats
        ),
        "domain_transform_forward_backward_cpu_s": median_seconds(forward_backward, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "size": args.size,
        "classes": args.classes,
        "crf_iterations": CRFParams().iterations,
        "crf": crf_rows(args.size, args.classes, args.repeats),
        **layer_row(args.size, args.classes, args.repeats),
        **dt_row(args.size, args.classes, args.repeats),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "refine.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Refinement at {args.size}x{args.size}x{args.classes} ({result['machine']}, "
        f"torch {result['torch']})",
        "",
        "| input | reference (C++) | ours (torch, CPU) | ours / reference | label agreement |"
        " labels the CRF changed |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["crf"]:
        ref = row.get("reference_cpu_s")
        lines.append(
            f"| {row['input']} | {f'{ref:.2f} s' if ref else 'not installed'} | "
            f"{row['torch_cpu_s']:.2f} s | {row.get('ratio', float('nan')):.2f}x | "
            f"{100 * row.get('label_agreement', float('nan')):.3f}% | "
            f"{100 * row.get('labels_changed_by_crf', float('nan')):.1f}% |"
        )
    lines += [
        "",
        f"- DenseCRF layer (synthetic scene): forward {result['dense_crf_layer_forward_cpu_s']:.2f}"
        f" s, forward + backward {result['dense_crf_layer_forward_backward_cpu_s']:.2f} s",
        f"- Domain transform, 3 iterations: forward {result['domain_transform_forward_cpu_s']:.2f}"
        f" s, forward + backward {result['domain_transform_forward_backward_cpu_s']:.2f} s",
    ]
    (RESULTS / "refine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
