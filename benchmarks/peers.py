"""atrous next to its peers on this CPU: torchvision, segmentation_models_pytorch, ONNX Runtime,
torchmetrics. Run by hand (peers are not dependencies):

    pip install -e ".[export]" segmentation-models-pytorch torchmetrics
    python benchmarks/peers.py [--repeats 5]

Each comparison runs interleaved in one process, batch 1 at 513x513, eval mode, median of the
repeats. Writes benchmarks/results/peers.json and peers.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

from atrous import Predictor
from atrous.export import export_onnx, load_onnx
from atrous.metrics import ConfusionMatrix
from atrous.models import deeplabv3, deeplabv3plus

RESULTS = Path(__file__).parent / "results"


def interleaved(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per runner, runs interleaved after one warm-up each."""
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.inference_mode()
def models(repeats: int) -> dict[str, dict[str, float]]:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (513, 513, 3), dtype=np.uint8)
    x = torch.randn(1, 3, 513, 513)
    v3 = deeplabv3(backbone="resnet50", num_classes=21, output_stride=8).eval()
    tv = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21
    ).eval()
    fast = Predictor(v3, fast=True)
    out = {
        "DeepLabv3 ResNet-50 OS8": interleaved(
            {
                "atrous eager": lambda: v3(x),
                "atrous fast (Predictor)": lambda: fast.logits(image),
                "torchvision eager": lambda: tv(x)["out"],
            },
            repeats,
        )
    }
    v3p = deeplabv3plus(backbone="resnet50", num_classes=21, output_stride=16).eval()
    peer = smp.DeepLabV3Plus(encoder_name="resnet50", encoder_weights=None, classes=21).eval()
    x512 = x[..., :512, :512]  # smp needs sides divisible by 16
    out["DeepLabv3+ ResNet-50 OS16 (512x512)"] = interleaved(
        {"atrous eager": lambda: v3p(x512), "smp eager": lambda: peer(x512)}, repeats
    )
    mobile = deeplabv3plus(num_classes=21).eval()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model, _ = load_onnx(export_onnx(mobile, Path(tmp) / "m.onnx", dynamic=True))
        out["DeepLabv3+ MobileNetV2 OS16"] = interleaved(
            {"atrous eager": lambda: mobile(x), "ONNX Runtime": lambda: onnx_model(x)}, repeats
        )
    return out


def metrics(count: int = 100) -> dict[str, float]:
    from torchmetrics.classification import MulticlassJaccardIndex

    generator = torch.Generator().manual_seed(0)
    pairs = [
        (
            torch.randint(0, 21, (513, 513), generator=generator),
            torch.randint(0, 21, (513, 513), generator=generator),
        )
        for _ in range(count)
    ]
    ours, peer = ConfusionMatrix(21), MulticlassJaccardIndex(num_classes=21, average="macro")

    def run_ours() -> None:
        ours.reset()
        for pred, target in pairs:
            ours.update(pred, target)

    def run_peer() -> None:
        peer.reset()
        for pred, target in pairs:
            peer.update(pred, target)

    seconds = interleaved({"atrous": run_ours, "torchmetrics": run_peer}, repeats=3)
    atrous_s, peer_s = seconds["atrous"], seconds["torchmetrics"]
    miou, peer_miou = ours.compute()["miou"], float(peer.compute())
    return {
        "atrous_s": atrous_s,
        "torchmetrics_s": peer_s,
        "atrous_miou": miou,
        "torchmetrics_miou": peer_miou,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    timings = models(args.repeats)
    metric = metrics()
    meta = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(
        json.dumps({"meta": meta, "models": timings, "metrics": metric}, indent=2)
    )
    lines = [
        f"CPU, {meta['threads']} threads, torch {meta['torch']}, batch 1 at 513x513, "
        f"median of {args.repeats} interleaved runs.",
        "",
        "| model | runner | seconds | speed vs first |",
        "|---|---|---|---|",
    ]
    for model, runs in timings.items():
        first = next(iter(runs.values()))
        for runner, seconds in runs.items():
            lines.append(f"| {model} | {runner} | {seconds:.3f} | {first / seconds:.2f}x |")
    lines += [
        "",
        "| metric accumulation, 100 x 513x513, 21 classes | seconds | mIoU |",
        "|---|---|---|",
        f"| atrous ConfusionMatrix | {metric['atrous_s']:.3f} | {metric['atrous_miou']:.6f} |",
        f"| torchmetrics MulticlassJaccardIndex | {metric['torchmetrics_s']:.3f} | "
        f"{metric['torchmetrics_miou']:.6f} |",
    ]
    (RESULTS / "peers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
