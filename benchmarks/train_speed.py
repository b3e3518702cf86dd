"""Training throughput on this CPU: atrous's training step against segmentation_models_pytorch and
a plain PyTorch loop on the same atrous network, same recipe (SGD momentum 0.9, cross-entropy).

Run by hand (about 15 minutes on 2 cores):
    pip install segmentation-models-pytorch
    python benchmarks/train_speed.py [--steps 6] [--repeats 3]
Cases: DeepLabv3+ MobileNetV2 and ResNet-50 (OS16, from scratch) at batch 8 x crop 160 and
batch 4 x crop 512. Rows:
- atrous: the step ``atrous train`` runs (its defaults: bf16 autocast where the CPU has it,
  channels-last, fp32 loss, no per-step host sync);
- plain loop: the same atrous network in fp32, NCHW, loss read every step (``loss.item()``);
- smp: ``smp.DeepLabV3Plus`` in the same plain loop.
Each timing is the median of ``--repeats`` interleaved rounds of ``--steps`` steps after two
warm-up steps; images/s and the speed-up over each other row. Writes
benchmarks/results/train_speed.json / .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from atrous.models import deeplabv3plus
from atrous.tasks.losses import segmentation_loss
from atrous.training.optim import autocast, resolve_amp

RESULTS = Path(__file__).parent / "results"
CASES = [
    ("mobilenetv2", 8, 160),
    ("resnet50", 8, 160),
    # 512, not the paper's 513: smp's DeepLabV3Plus rejects sizes that are not multiples of 16.
    ("mobilenetv2", 4, 512),
    ("resnet50", 4, 512),
]
CLASSES = 21


def _smp(backbone: str) -> nn.Module:
    import segmentation_models_pytorch as smp

    encoder = {"mobilenetv2": "mobilenet_v2", "resnet50": "resnet50"}[backbone]
    return smp.DeepLabV3Plus(encoder, encoder_weights=None, classes=CLASSES)


def _stepper(row: str, backbone: str, batch: int, crop: int) -> Callable[[], None]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, crop, crop)
    y = torch.randint(0, CLASSES, (batch, crop, crop))
    if row == "smp":
        model = _smp(backbone)
    else:
        model = deeplabv3plus(backbone=backbone, num_classes=CLASSES)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    if row == "atrous":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        amp = resolve_amp("auto", torch.device("cpu"))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(amp, torch.device("cpu")):
                out = model(x)
            segmentation_loss(out, y).backward()  # fp32 loss, no host sync
            optimizer.step()

        return step

    def plain() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        loss.backward()
        optimizer.step()
        loss.item()  # the plain loop reads its loss every step

    return plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crops", type=int, nargs="+", default=[160, 512])
    args = parser.parse_args()
    rows = ("atrous", "plain loop", "smp")
    log = RESULTS / "train_speed.json"
    kept = json.loads(log.read_text()) if log.is_file() else []
    results = [r for r in kept if r["crop"] not in args.crops]
    for backbone, batch, crop in [c for c in CASES if c[2] in args.crops]:
        steppers = {row: _stepper(row, backbone, batch, crop) for row in rows}
        for step in steppers.values():
            step()
            step()  # warm-up
        times: dict[str, list[float]] = {row: [] for row in rows}
        for _ in range(args.repeats):  # interleaved, so slow phases hit every row alike
            for row, step in steppers.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[row].append((time.perf_counter() - start) / args.steps)
        case = {"backbone": backbone, "batch": batch, "crop": crop}
        for row in rows:
            seconds = statistics.median(times[row])
            results.append(
                {**case, "row": row, "s_per_step": seconds, "images_per_s": batch / seconds}
            )
            print(json.dumps(results[-1]), flush=True)
        del steppers
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        f"# Training throughput on {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__} (`python benchmarks/train_speed.py`)",
        "",
        f"Median of {args.repeats} interleaved rounds of {args.steps} steps; DeepLabv3+ OS16, "
        f"{CLASSES} classes, from scratch.",
        "",
        "| network | batch x crop | atrous img/s | plain loop img/s | smp img/s "
        "| atrous / plain | atrous / smp |",
        "|---|---|---|---|---|---|---|",
    ]
    for backbone, batch, crop in CASES:
        if not any(r["crop"] == crop and r["backbone"] == backbone for r in results):
            continue
        got = {
            r["row"]: r
            for r in results
            if (r["backbone"], r["batch"], r["crop"]) == (backbone, batch, crop)
        }
        a, p, s = (got[k]["images_per_s"] for k in rows)
        lines.append(
            f"| {backbone} | {batch} x {crop} | {a:.2f} | {p:.2f} | {s:.2f} "
            f"| {a / p:.2f}x | {a / s:.2f}x |"
        )
    (RESULTS / "train_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
