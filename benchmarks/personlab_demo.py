"""The PersonLab demo's keypoint AP and mask AP on its 60 held-out synthetic images, and its
wall time, for a few budgets and settings (same data, seed shown per row).

Run by hand (3-9 minutes a row on 2 cores):
    python benchmarks/personlab_demo.py --name default --seed 0 [--set key=value ...]
Each row trains :func:`atrous.demo.run_personlab_demo` from scratch into a fresh temporary
folder with the demo's recipe plus ``--set`` overrides and appends one line to
benchmarks/results/personlab_demo.jsonl; benchmarks/results/personlab.md is written by hand from
those lines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from atrous.demo import run_personlab_demo

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = run_personlab_demo(
            Path(folder) / "run", seed=args.seed, progress=False, overrides=args.overrides
        )
    m = result["metrics"]
    row = {
        "name": args.name, "seed": args.seed, "overrides": args.overrides,
        "keypoint_ap": m["keypoint_ap"], "keypoint_ap50": m["keypoint_ap50"],
        "mask_ap": m["mask_ap"], "mask_ap50": m["mask_ap50"], "miou": m["miou"],
        "seconds": round(result["seconds"], 1), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    print(json.dumps(row))
    with (RESULTS / "personlab_demo.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
