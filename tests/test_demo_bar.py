"""The demo's promise, checked in full: `pytest -m slow` (minutes on a CPU)."""

from pathlib import Path

import pytest

from atrous.demo import run_demo


@pytest.mark.slow
def test_demo_reaches_its_miou_bar(tmp_path: Path):
    result = run_demo(tmp_path / "demo", progress=False)
    # 77.79 at seed 0 (77.4-78.7 over seeds 0-3) with ASPP rates 1, 2, 3 and zero-initialised
    # residual units; 72.44 before both, benchmarks/results/demo_budget.md
    assert result["metrics"]["miou"] >= 0.74
    # its time is measured in benchmarks/demo_runs.py (benchmarks/results/demo_runs.md)
