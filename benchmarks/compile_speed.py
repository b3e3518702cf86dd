"""``train.compile`` on this CPU: atrous's training step with the model eager against the same
step through ``torch.compile``, same network, data and recipe; the time compiling takes, the
steady-state speed, and whether the losses stay those of the eager run.

Run by hand (a few minutes per case on 2 cores):
    python benchmarks/compile_speed.py [--cases mobilenetv2:8:160] [--steps 6] [--repeats 3]
Each case: both models from the same initial weights; two warm-up steps each (the compiled
model's first ones include compiling, timed apart); then ``--repeats`` interleaved rounds of
``--steps`` steps, median s/step. The losses of the first ``--steps`` steps of each are kept
to compare. Rows append to benchmarks/results/compile_speed.json and the table is rewritten to
compile_speed.md as each case finishes.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from atrous.models import deeplabv3plus
from atrous.tasks.losses import segmentation_loss
from atrous.training.optim import autocast, resolve_amp

RESULTS = Path(__file__).parent / "results"
CLASSES = 21


def _step(model, optimizer, x, y, amp) -> float:
    optimizer.zero_grad(set_to_none=True)
    with autocast(amp, torch.device("cpu")):
        out = model(x)
    loss = segmentation_loss(out, y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def run_case(
    backbone: str, batch: int, crop: int, steps: int, repeats: int, amp_name: str = "auto"
) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (batch, crop, crop))
    eager = deeplabv3plus(backbone=backbone, num_classes=CLASSES).train()
    eager = eager.to(memory_format=torch.channels_last)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin)
    amp = resolve_amp(amp_name, torch.device("cpu"))
    runs = {}
    for name, model, params in (("eager", eager, eager), ("compile", compiled, twin)):
        optimizer = torch.optim.SGD(params.parameters(), lr=0.01, momentum=0.9)
        start = time.perf_counter()
        losses = [_step(model, optimizer, x, y, amp) for _ in range(2)]
        runs[name] = {"model": model, "optimizer": optimizer, "losses": losses,
                      "first_two_s": time.perf_counter() - start, "times": []}  # fmt: skip
    for _ in range(repeats):
        for run in runs.values():
            start = time.perf_counter()
            for _ in range(steps):
                run["losses"].append(_step(run["model"], run["optimizer"], x, y, amp))
            run["times"].append((time.perf_counter() - start) / steps)
    e, c = runs["eager"], runs["compile"]
    diffs = [abs(a - b) / max(abs(a), 1e-9) for a, b in zip(e["losses"], c["losses"], strict=True)]
    return {
        "backbone": backbone, "batch": batch, "crop": crop, "amp": amp,
        "eager_s_per_step": statistics.median(e["times"]),
        "compile_s_per_step": statistics.median(c["times"]),
        "compile_first_two_steps_s": c["first_two_s"],
        "eager_first_two_steps_s": e["first_two_s"],
        "max_relative_loss_difference": max(diffs), "steps_compared": len(diffs),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def write_table(rows: list[dict]) -> None:
    lines = [
        "# `train.compile` on the CPU (`python benchmarks/compile_speed.py`)",
        "",
        "atrous's training step (bf16 autocast where the CPU has it, channels-last), the model "
        "eager vs `torch.compile`d, same initial weights and batch; median of interleaved rounds.",
        "",
        "| date | network | batch x crop | amp | eager s/step | compiled s/step | speed-up "
        "| compiling (first 2 steps) | max loss difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['date']} | DeepLabv3+ {r['backbone']} | {r['batch']} x {r['crop']} | "
            f"{r['amp']} | {r['eager_s_per_step']:.3f} | {r['compile_s_per_step']:.3f} | "
            f"{r['eager_s_per_step'] / r['compile_s_per_step']:.2f}x | "
            f"{r['compile_first_two_steps_s']:.0f} s | "
            f"{100 * r['max_relative_loss_difference']:.2f}% over {r['steps_compared']} steps |"
        )
    (RESULTS / "compile_speed.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["mobilenetv2:8:160"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", default="auto", help="train.amp: auto (bf16 here), none")
    args = parser.parse_args()
    path = RESULTS / "compile_speed.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for case in args.cases:
        backbone, batch, crop = case.split(":")
        row = run_case(backbone, int(batch), int(crop), args.steps, args.repeats, args.amp)
        print(json.dumps(row), flush=True)
        rows.append(row)
        path.write_text(json.dumps(rows, indent=1) + "\n")
        write_table(rows)


if __name__ == "__main__":
    main()
