"""Peak memory of Auto-DeepLab's search supernet: one forward + backward (a weights step; an
alpha/beta step costs the same) at the demo crop and at the paper's 321x321, each in a fresh
process (peak resident set size, CPU).

Run by hand:  python benchmarks/search_memory.py
Writes benchmarks/results/search_memory.md. Users of the public PyTorch port report running out
of GPU memory (about 18 GB at batch 2, F = 8, crop 321) once alpha/beta updates start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CASES = [(64, 2), (64, 8), (321, 2), (321, 8)]  # (crop, filters F); batch 2, 12 layers


def main() -> None:
    lines = [
        "# Auto-DeepLab supernet peak memory (`python benchmarks/search_memory.py`)",
        "",
        "12 layers, batch 2, 5 classes, one forward + backward on the CPU (inputs padded to a",
        "multiple of 32: 321 -> 352); peak resident memory of a fresh process.",
        "",
        "| crop | F | peak memory |",
        "|---|---|---|",
    ]
    for crop, filters in CASES:
        code = (
            "from atrous.training.search import search_memory; "
            f"print(search_memory(5, {crop}, filters={filters}))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        mib = float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")
        lines.append(f"| {crop} | {filters} | {mib / 1024:.2f} GiB |")
        print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
