"""GPU benchmark, one short command on a CUDA machine:  python benchmarks/gpu.py [--quick]

- Training throughput (bf16 autocast, channels-last, batch 16 at 513x513, SGD): DeepLabv3+
  Xception-65 and ResNet-101 at OS16 in atrous, against segmentation_models_pytorch's
  DeepLabV3Plus (resnet101 / xception65 encoders where smp has them) and torchvision's
  deeplabv3_resnet101, all in the same loop.
- Inference (batch 1 at 513x513): the same atrous models at OS16 and OS8, eager and with
  ``Predictor(fast=True)``-style BN folding.
- Refinement at 513x513x21: the torch dense CRF and the domain transform on CUDA against the CPU.
Median of interleaved rounds after warm-up, synchronised. Writes benchmarks/results/gpu.json and
gpu.md. ``--quick`` halves the rounds (for a device with little time left).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from atrous.inference.fast import optimize_for_inference
from atrous.models import deeplabv3plus
from atrous.refine import dense_crf, domain_transform

RESULTS = Path(__file__).parent / "results"


def _time(fn: Callable[[], None], rounds: int, device: torch.device) -> float:
    for _ in range(2):
        fn()
    samples = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _train_step(model: nn.Module, batch: int, device: torch.device) -> Callable[[], None]:
    model = model.to(device).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 513, 513, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 21, (batch, 513, 513), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = model(x)
        out = out["out"] if isinstance(out, dict) else out
        F.cross_entropy(out.float(), y).backward()
        optimizer.step()

    return step


def _peers() -> dict[str, Callable[[], nn.Module]]:
    out: dict[str, Callable[[], nn.Module]] = {}
    try:
        import segmentation_models_pytorch as smp

        out["smp DeepLabV3Plus resnet101"] = lambda: smp.DeepLabV3Plus(
            "resnet101", encoder_weights=None, classes=21
        )
    except ImportError:
        pass
    import torchvision

    out["torchvision deeplabv3_resnet101"] = lambda: (
        torchvision.models.segmentation.deeplabv3_resnet101(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA device")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    rounds = 5 if args.quick else 10
    rows: list[dict[str, object]] = []
    models = {
        "atrous DeepLabv3+ Xception-65": lambda: deeplabv3plus(
            backbone="xception65", num_classes=21
        ),
        "atrous DeepLabv3+ ResNet-101": lambda: deeplabv3plus(backbone="resnet101", num_classes=21),
        **_peers(),
    }
    for name, build in models.items():
        seconds = _time(_train_step(build(), args.batch, cuda), rounds, cuda)
        rows.append(
            {
                "task": "train",
                "model": name,
                "s_per_step": seconds,
                "images_per_s": args.batch / seconds,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        torch.cuda.empty_cache()
    x = torch.randn(1, 3, 513, 513, device=cuda)
    for name, build in list(models.items())[:2]:
        model = build().to(cuda).eval()
        for os in (16, 8):
            model.set_output_stride(os)
            fast = optimize_for_inference(model)
            for kind, net in (("eager", model), ("fast", fast)):
                with torch.no_grad():
                    seconds = _time(lambda net=net: net(x), rounds, cuda)
                rows.append({"task": f"inference OS{os} {kind}", "model": name, "seconds": seconds})
                print(json.dumps(rows[-1]), flush=True)
    image = torch.randint(0, 256, (3, 513, 513), dtype=torch.uint8)
    probs = torch.rand(21, 513, 513).softmax(0)
    edges = torch.rand(1, 1, 513, 513)
    for device in (cpu, cuda):
        img, p, e = image.to(device), probs.to(device), edges.to(device)
        crf = _time(
            lambda img=img, p=p: dense_crf(img, p, backend="torch"), max(3, rounds // 2), device
        )
        dt = _time(lambda p=p, e=e: domain_transform(p[None], e), rounds, device)
        rows.append({"task": "dense CRF 513x513x21 (torch)", "model": device.type, "seconds": crf})
        rows.append({"task": "domain transform 513x513x21", "model": device.type, "seconds": dt})
        print(json.dumps(rows[-2:]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(rows, indent=1) + "\n")
    name = torch.cuda.get_device_name()
    lines = [
        f"# GPU benchmark on {name}, torch {torch.__version__} (`python benchmarks/gpu.py`)",
        "",
        "| task | model / device | seconds | images/s |",
        "|---|---|---|---|",
    ]
    for r in rows:
        seconds = r.get("s_per_step", r.get("seconds"))
        speed = f"{r['images_per_s']:.1f}" if "images_per_s" in r else "-"
        lines.append(f"| {r['task']} | {r['model']} | {seconds:.4f} | {speed} |")
    (RESULTS / "gpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
