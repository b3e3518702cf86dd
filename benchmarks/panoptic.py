"""Panoptic costs at Cityscapes size (1024 x 2048) on this CPU: the Panoptic-DeepLab network's
forward pass against its post-processing, and the PQ / Parsing Covering accumulators.

Run by hand (a few minutes):  python benchmarks/panoptic.py [--repeats 3]
The network is Panoptic-DeepLab ResNet-50 and MobileNetV2 (OS16, 19 classes, eval mode). The
post-processing gets realistic inputs: semantic logits from the network, a centre heatmap with
60 Gaussian peaks and offsets pointing at them (thing classes 11-18 over half of the image).
The metrics accumulate one 1024 x 2048 prediction / ground truth pair with ~100 segments.
Median of ``--repeats``. Writes benchmarks/results/panoptic.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from atrous.metrics import PanopticQuality, ParsingCovering
from atrous.models import panoptic_deeplab
from atrous.tasks.panoptic_decode import panoptic_from_outputs

RESULTS = Path(__file__).parent / "results"
H, W = 1024, 2048
THINGS = list(range(11, 19))


def _median(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _outputs(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = torch.randn(1, 19, H // 4, W // 4, generator=generator)
    logits[:, 11:19, :, : W // 8] += 3.0  # things on the left half
    logits = torch.nn.functional.interpolate(logits, size=(H, W), mode="bilinear")
    ys = torch.randint(0, H, (60,), generator=generator)
    xs = torch.randint(0, W // 2, (60,), generator=generator)
    grid_y, grid_x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    heat = torch.zeros(1, 1, H, W)
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        y0, y1, x0, x1 = max(0, y - 25), min(H, y + 26), max(0, x - 25), min(W, x + 26)
        patch = torch.exp(
            -((grid_y[y0:y1, x0:x1] - y) ** 2 + (grid_x[y0:y1, x0:x1] - x) ** 2) / 128.0
        )
        heat[0, 0, y0:y1, x0:x1] = torch.maximum(heat[0, 0, y0:y1, x0:x1], patch)
    nearest = torch.stack([ys, xs], 1).float()
    offsets = torch.zeros(1, 2, H, W)
    pick = torch.randint(0, 60, (H, W), generator=generator)
    offsets[0, 0] = nearest[pick, 0] - grid_y
    offsets[0, 1] = nearest[pick, 1] - grid_x
    return logits, heat, offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    lines = [
        f"# Panoptic costs at {H}x{W}, {torch.get_num_threads()} CPU threads "
        "(`python benchmarks/panoptic.py`)",
        "",
        "| step | seconds |",
        "|---|---|",
    ]
    x = torch.randn(1, 3, H, W)
    for backbone in ("mobilenetv2", "resnet50"):
        model = panoptic_deeplab(backbone=backbone, num_classes=19, thing_classes=THINGS).eval()
        with torch.no_grad():
            seconds = _median(lambda model=model: model.forward_panoptic(x), args.repeats)
        lines.append(f"| network forward, Panoptic-DeepLab {backbone} | {seconds:.2f} |")
        print(lines[-1], flush=True)
    logits, heat, offsets = _outputs(generator)
    post = _median(
        lambda: panoptic_from_outputs(logits, heat, offsets, THINGS, stuff_area=2048), args.repeats
    )
    lines.append(f"| post-processing (centres, grouping, merge; 60 instances) | {post:.2f} |")
    print(lines[-1], flush=True)
    pan = panoptic_from_outputs(logits, heat, offsets, THINGS, stuff_area=2048)[0]
    target = pan.clone()
    top = target[: H // 2]
    target[: H // 2] = torch.where(top > 11000, top + 1, top)  # renumbered: half the things miss
    metrics = {
        "PanopticQuality.update": PanopticQuality(19, thing_classes=THINGS),
        "ParsingCovering.update": ParsingCovering(19, thing_classes=THINGS),
    }
    for name, metric in metrics.items():
        seconds = _median(lambda metric=metric: metric.update(pan, target), args.repeats)
        lines.append(f"| {name}, one image | {seconds:.3f} |")
        print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "panoptic.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
