"""The demo's promise, checked in full: `pytest -m slow` (minutes on a CPU)."""

from pathlib import Path

import pytest

from atrous.demo import run_demo


@pytest.mark.slow
def test_demo_reaches_its_miou_bar(tmp_path: Path):
    result = run_demo(tmp_path / "demo", progress=False)
    # 74.19 before DepthwiseConv2d, 73.59 after it (seed 0, 2,500 steps): below the bar,
    # benchmarks/results/demo_budget.md; the bar stays.
    assert result["metrics"]["miou"] >= 0.74
    assert result["seconds"] <= 150  # measured 103-126 s on the 2-core CPU the README quotes
