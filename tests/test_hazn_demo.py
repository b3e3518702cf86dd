"""The HAZN demo (``atrous demo --task parts``): a two-step run on a handful of scenes writes
part mIoU overall and by object size, predictions, and a report with the size table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atrous.cli import build_parser
from atrous.data.person_part import SIZE_BUCKETS
from atrous.demo import DEMOS
from atrous.demo_tasks import PARTS_OVERRIDES, run_parts_demo


def test_the_parts_demo_writes_miou_by_size_and_predictions(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # 64-pixel training crops of the 128-pixel scenes keep the two steps quick
    result = run_parts_demo(
        out, steps=2, num_train=4, num_val=3, progress=False, device="cpu",
        overrides=["data.crop_size=64"],
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0
    assert list(metrics["miou_by_size"]) == list(SIZE_BUCKETS)
    sizes = [v for v in metrics["miou_by_size"].values() if v is not None]  # null: no object
    assert sizes and all(0.0 <= v <= 1.0 for v in sizes)
    assert sum(metrics["objects_by_size"].values()) >= 3  # at least one figure per scene
    assert len(list((out / "predictions").glob("val_*.png"))) == 3
    report = DEMOS["parts"].report(result, out)
    assert report.splitlines()[0].split() == ["size", "mIoU", "objects"]
    assert all(any(line.startswith(b) for line in report.splitlines()) for b in SIZE_BUCKETS)
    assert "part mIoU" in report.splitlines()[-1]
    with pytest.raises(Exception, match="earlier run"):  # a demo never trains over another
        run_parts_demo(out, steps=1, num_train=1, num_val=1, progress=False)


def test_the_parts_demo_is_registered() -> None:
    assert DEMOS["parts"].run is run_parts_demo and DEMOS["parts"].out == "atrous-demo-parts"
    assert "task=parts" in PARTS_OVERRIDES and "model.name=hazn" in PARTS_OVERRIDES
    args = build_parser().parse_args(["demo", "--task", "parts", "--steps", "2"])
    assert args.task == "parts" and callable(args.func)
