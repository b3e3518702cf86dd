"""Where a training step's time goes: the atrous step of benchmarks/train_speed.py (bf16 autocast
where the CPU has it, channels-last, fp32 loss, SGD) against the same network in a plain fp32
loop, per operator (forward + backward + optimizer step).

Run by hand:  python benchmarks/profile_train.py [--backbone mobilenetv2] [--batch 8] [--crop 160]
Writes benchmarks/results/train_profile_<backbone>_<crop>.md (torch.profiler over 3 steps after
2 warm-up steps).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import _stepper  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def table(step: Callable[[], None], rows: int) -> tuple[str, float]:
    """The top ``rows`` operators by self CPU time and the profiled seconds per step."""
    step()
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages) / 3e6
    return averages.table(sort_by="self_cpu_time_total", row_limit=rows), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--rows", type=int, default=14)
    args = parser.parse_args()
    text = [
        f"# One training step, DeepLabv3+ {args.backbone} OS16, batch {args.batch} x crop "
        f"{args.crop}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "",
        "Self CPU time by operator over 3 steps (`python benchmarks/profile_train.py`).",
    ]
    for row in ("atrous", "plain loop"):
        found, seconds = table(_stepper(row, args.backbone, args.batch, args.crop), args.rows)
        text += ["", f"## {row}: {seconds:.3f} s per step", "```", found, "```"]
    RESULTS.mkdir(exist_ok=True)
    name = f"train_profile_{args.backbone}_{args.crop}.md"
    (RESULTS / name).write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
