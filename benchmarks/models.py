"""Forward-pass time and size of every atrous builder at 513x513 on CPU, next to torchvision.

Run by hand:  python benchmarks/models.py [--repeats 5] [--size 513] [--only NAME --out STEM]
Writes benchmarks/results/models.json and models.md (or STEM.json / STEM.md). Each pair
(atrous vs torchvision, same architecture) runs interleaved in one process, eval mode, batch 1,
median of the repeats.
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
import torchvision
from torch import nn

import atrous
from atrous.models import MODELS, build_model
from atrous.models.summary import summary

RESULTS = Path(__file__).parent / "results"

# name -> builder call; the paper's configuration of each family.
ATROUS = {
    "deeplabv1 vgg16 OS8": ("deeplabv1", {}),
    "deeplabv2 resnet101 OS8": ("deeplabv2", {"backbone": "resnet101", "output_stride": 8}),
    "deeplabv3 resnet50 OS16": ("deeplabv3", {"backbone": "resnet50", "output_stride": 16}),
    "deeplabv3 resnet50 OS8": ("deeplabv3", {"backbone": "resnet50", "output_stride": 8}),
    "deeplabv3 resnet101 OS8": ("deeplabv3", {"backbone": "resnet101", "output_stride": 8}),
    "deeplabv3plus xception65 OS16": (
        "deeplabv3plus",
        {"backbone": "xception65", "output_stride": 16},
    ),
    "deeplabv3plus mobilenetv2 OS16": (
        "deeplabv3plus",
        {"backbone": "mobilenetv2", "output_stride": 16},
    ),
    "mobile_deeplabv3 mobilenetv2 OS16": ("mobile_deeplabv3", {}),
}
TORCHVISION = {
    "deeplabv3 resnet50 OS8": torchvision.models.segmentation.deeplabv3_resnet50,
    "deeplabv3 resnet101 OS8": torchvision.models.segmentation.deeplabv3_resnet101,
}


def _timer(model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start

    return run


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--only", default="", help="run only models whose name contains this")
    parser.add_argument("--out", default="models", help="results file stem in results/")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    rows = []
    for name, (builder, kwargs) in ATROUS.items():
        if args.only not in name:
            continue
        if builder not in MODELS:
            print(f"skip {name}: no builder {builder!r}")
            continue
        model = build_model(builder, num_classes=21, **kwargs).eval()
        size = summary(model, (3, args.size, args.size))
        runners = {"atrous": _timer(model, x)}
        if name in TORCHVISION:
            tv = TORCHVISION[name](weights=None, weights_backbone=None, num_classes=21).eval()
            tv_forward = _timer(tv, x)
            runners["torchvision"] = tv_forward
            if hasattr(atrous.models, "from_torchvision"):
                runners["atrous from_torchvision"] = _timer(
                    atrous.models.from_torchvision(tv).eval(), x
                )
        for run in runners.values():  # warm-up
            run()
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.repeats):  # interleaved
            for key, run in runners.items():
                times[key].append(run())
        row = {
            "model": name,
            "params_M": round(size.params / 1e6, 2),
            "madds_B": round(size.madds / 1e9, 2),
            **{f"{k}_s": round(statistics.median(v), 3) for k, v in times.items()},
        }
        print(row, flush=True)
        rows.append(row)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "input": f"1x3x{args.size}x{args.size}",
        "repeats": args.repeats,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    keys = [
        "model",
        "params_M",
        "madds_B",
        "atrous_s",
        "atrous from_torchvision_s",
        "torchvision_s",
    ]
    lines = [
        f"Forward time, batch 1, {meta['input']}, CPU, {meta['threads']} threads, "
        f"torch {meta['torch']}, median of {args.repeats} interleaved runs.",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
