"""What a newcomer's `atrous demo` prints: the demo run from a fresh clone of this repository
(`git clone`, the CLI from the clone's sources), per seed and thread count, each row appended to
benchmarks/results/demo_runs.json as it finishes and the table rewritten to demo_runs.md.

Run by hand (about 3 minutes a row on 2 CPU cores):
    python benchmarks/demo_runs.py --rows 0:2 0:2 1:2 0:1      # seed:threads, one row each
The demo's time is measured here, not in a test (machines and days differ by up to 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def run(seed: int, threads: int, clone: Path) -> dict:
    """One ``atrous demo`` in a fresh folder, from the clone's sources."""
    env = {
        **os.environ,
        "PYTHONPATH": str(clone / "src"),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "atrous", "demo", "--seed", str(seed), "--out", out],
            cwd=clone, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    found = re.search(r"demo: mIoU ([\d.]+) on the held-out split in (\d+) s", done.stdout)
    if found is None:
        raise RuntimeError(f"no summary line in:\n{done.stdout[-2000:]}")
    return {
        "seed": seed,
        "threads": threads,
        "miou": float(found.group(1)),
        "demo_seconds": int(found.group(2)),  # what the demo itself prints
        "wall_seconds": round(seconds, 1),  # with the interpreter start-up
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_table(rows: list[dict]) -> None:
    lines = [
        "# `atrous demo` as a newcomer runs it (fresh clone, `benchmarks/demo_runs.py`)",
        "",
        "Each row is one `atrous demo --seed S` with S threads (OMP_NUM_THREADS) from a fresh",
        "clone; mIoU and seconds are what the demo prints (data, training, evaluation).",
        "",
        "| date | commit | seed | threads | mIoU | seconds | cores |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['date']} | {r['commit']} | {r['seed']} | {r['threads']} | {r['miou']:.2f} | "
            f"{r['demo_seconds']} | {r['cores']} |"
        )
    (RESULTS / "demo_runs.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["0:2", "0:2", "1:2"], help="seed:threads")
    args = parser.parse_args()
    path = RESULTS / "demo_runs.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "atrous"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        for item in args.rows:
            seed, threads = (int(v) for v in item.split(":"))
            row = run(seed, threads, clone)
            print(json.dumps(row), flush=True)
            rows.append(row)
            path.write_text(json.dumps(rows, indent=1) + "\n")
            write_table(rows)


if __name__ == "__main__":
    main()
