"""Depthwise 3x3 / 5x5 convs on this CPU: bf16 (what autocast picks) against fp32, channels-last,
forward and forward + backward, for the shapes DeepLabv3+ MobileNetV2 OS16 runs at batch 8 x
crop 160 (strided, atrous and plain) and a few from ASPP at 513, Xception and 5x5 kernels.

Run by hand (about a minute):  python benchmarks/depthwise_bf16.py
Writes benchmarks/results/depthwise_bf16.md. It is why :class:`atrous.models.layers.
DepthwiseConv2d` trains strided, atrous and non-3x3 depthwise convs in fp32 under CPU bf16
autocast (their forward alone stays bf16: it is faster everywhere), and computes a rate that
reaches past the features (ASPP's 12 and 18 on 10x10) as the per-channel multiply it then is.
The last column times that module on bf16 inputs under autocast, as training runs it.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from atrous.models.layers import (
    _center_tap_only,  # the module's own rule, so the table labels what it runs
    fast_depthwise,
    fp32_depthwise_under_cpu_autocast,
)

# (channels, input size, kernel, stride, dilation), batch 8
CASES = [
    (96, 80, 3, 2, 1),
    (144, 40, 3, 2, 1),
    (192, 20, 3, 2, 1),
    (576, 20, 3, 2, 1),
    (960, 10, 3, 1, 2),
    (320, 10, 3, 1, 2),
    (256, 10, 3, 1, 6),
    (320, 10, 3, 1, 12),
    (2048, 10, 3, 1, 6),
    (2048, 10, 3, 1, 12),
    (2048, 10, 3, 1, 18),
    (304, 40, 3, 1, 1),
    (960, 10, 3, 1, 1),
    (32, 80, 3, 1, 1),
    (256, 33, 3, 1, 6),
    (256, 33, 3, 1, 18),
    (728, 33, 3, 1, 1),
    (728, 66, 3, 2, 1),
    (728, 33, 3, 1, 2),
    (128, 40, 5, 1, 1),
    (128, 40, 5, 2, 1),
]


def _median_ms(run: Callable[[], None]) -> float:
    """Median milliseconds of 5 calls after 2 warm-up calls."""
    run()
    run()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _time(c: int, size: int, k: int, s: int, d: int, dtype: torch.dtype, backward: bool) -> float:
    x = torch.randn(8, c, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, 1, k, k, dtype=dtype, requires_grad=backward)
    x.requires_grad_(backward)

    def run() -> None:
        y = F.conv2d(x, w, stride=s, padding=(k - 1) // 2 * d, dilation=d, groups=c)
        if backward:
            y.backward(torch.ones_like(y))

    return _median_ms(run)


def _time_atrous(c: int, size: int, k: int, s: int, d: int) -> float:
    """fwd + bwd of the DepthwiseConv2d a DeepLab holds, bf16 input, under CPU bf16 autocast."""
    conv = fast_depthwise(
        nn.Sequential(nn.Conv2d(c, c, k, s, (k - 1) // 2 * d, d, groups=c, bias=False))
    )
    x = torch.randn(8, c, size, size, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.backward(torch.ones_like(y))

    return _median_ms(run)


def main() -> None:
    lines = [
        f"# Depthwise convs, bf16 vs fp32 ({platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__})",
        "",
        "Batch 8, channels-last, median of 5 (`python benchmarks/depthwise_bf16.py`). "
        "ms; ratio = bf16 / fp32 (> 1: bf16 is slower).",
        "",
        "| channels | size | kernel | stride | dilation | fwd fp32 | fwd bf16 | ratio "
        "| fwd+bwd fp32 | fwd+bwd bf16 | ratio | atrous trains it in | atrous fwd+bwd |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, size, k, s, d in CASES:
        f32, b16 = (_time(c, size, k, s, d, t, False) for t in (torch.float32, torch.bfloat16))
        g32, g16 = (_time(c, size, k, s, d, t, True) for t in (torch.float32, torch.bfloat16))
        conv = nn.Conv2d(c, c, k, stride=s, padding=(k - 1) // 2 * d, dilation=d, groups=c)
        picked = "fp32" if fp32_depthwise_under_cpu_autocast(conv) else "bf16"  # when training
        if _center_tap_only(conv, torch.empty(1, c, size, size)):
            picked = "centre tap"
        ours = _time_atrous(c, size, k, s, d)
        lines.append(
            f"| {c} | {size} | {k} | {s} | {d} | {f32:.2f} | {b16:.2f} | {b16 / f32:.2f} "
            f"| {g32:.2f} | {g16:.2f} | {g16 / g32:.2f} | {picked} | {ours:.2f} |"
        )
        print(lines[-1], flush=True)
    out = Path(__file__).parent / "results" / "depthwise_bf16.md"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
