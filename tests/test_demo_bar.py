"""The demo's promise, checked in full: `pytest -m slow` (minutes on a CPU)."""

from pathlib import Path

import pytest

from atrous.demo import run_demo


@pytest.mark.slow
def test_demo_reaches_its_miou_bar(tmp_path: Path):
    result = run_demo(tmp_path / "demo", progress=False)
    # 75.38 at seed 0 with ASPP rates 1, 2, 3 (72.44 with the paper's 6, 12, 18, which reach
    # past the 96 crop's 6x6 features), benchmarks/results/demo_budget.md
    assert result["metrics"]["miou"] >= 0.74
    # 141 s on a day the 2-core CPU ran 1.4x slower than its fastest (103-126 s on that one)
    assert result["seconds"] <= 150
