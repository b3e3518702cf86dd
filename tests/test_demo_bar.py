"""The demo's promise, checked in full: `pytest -m slow` (minutes on a CPU)."""

from pathlib import Path

import pytest

from atrous.demo import run_demo


@pytest.mark.slow
def test_demo_reaches_its_miou_bar(tmp_path: Path):
    result = run_demo(tmp_path / "demo", progress=False)
    # seed 0 gave 77.79 on an earlier day's machine and 72.77 on today's 2-core machine, every
    # run (the number depends on the thread count and CPU: benchmarks/results/demo_runs.md)
    assert result["metrics"]["miou"] >= 0.74
    # its time is measured in benchmarks/demo_runs.py (benchmarks/results/demo_runs.md)
