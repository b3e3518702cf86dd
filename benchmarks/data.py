"""Does loading keep up with training? Decoded + augmented samples per second vs a train step.

Run by hand:  python benchmarks/data.py [--images 64] [--batches 20]
Generates VOC-sized scenes (375-500 px, JPEG + palette PNG), loads them through
SegmentationFolder + the DeepLab train transforms (crop 513) with a DataLoader at 0/1/2 workers,
and times a forward+backward step of DeepLabv3+ MobileNetV2 at the same batch on this CPU.
Writes benchmarks/results/data.json and data.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from atrous.data import build_dataset, make_synthetic_dataset, train_transforms
from atrous.models import deeplabv3plus

RESULTS = Path(__file__).parent / "results"


def loader_rate(root: Path, workers: int, batch: int, batches: int) -> float:
    dataset = build_dataset("folder", root, "train", train_transforms(513))
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    it = iter(loader)
    next(it)  # warm-up (workers start)
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        try:
            images, _ = next(it)
        except StopIteration:
            it = iter(loader)
            images, _ = next(it)
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def train_rate(batch: int, steps: int = 3) -> float:
    torch.manual_seed(0)
    model = deeplabv3plus(num_classes=21).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9)
    x, y = torch.randn(batch, 3, 513, 513), torch.randint(0, 21, (batch, 513, 513))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return batch / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(tmp, num_train=args.images, num_val=1, size_range=(375, 500))
        for workers in (0, 1, 2):
            rows[f"loader, {workers} workers"] = loader_rate(
                root, workers, args.batch, args.batches
            )
            print(f"{workers} workers: {rows[f'loader, {workers} workers']:.1f} samples/s")
    rows["train step (fwd+bwd), DeepLabv3+ MobileNetV2"] = train_rate(args.batch)
    print(f"train: {rows['train step (fwd+bwd), DeepLabv3+ MobileNetV2']:.2f} samples/s")
    meta = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "crop": 513,
        "batch": args.batch,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data.json").write_text(json.dumps({"meta": meta, "samples_per_s": rows}, indent=2))
    lines = [
        f"Samples per second at crop 513, batch {args.batch}, CPU with {meta['threads']} "
        f"threads, torch {meta['torch']}.",
        "",
        "| what | samples/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in rows.items()]
    (RESULTS / "data.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
