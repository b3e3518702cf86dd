"""Readable and machine-readable forms of a metrics result."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def format_table(result: dict[str, Any], classes: Sequence[str]) -> str:
    """A per-class IoU / accuracy table followed by the summary numbers, in percent."""
    width = max([len("class")] + [len(c) for c in classes])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}", "-" * (width + 16)]
    for name, iou, acc in zip(classes, result["iou"], result["accuracy"], strict=True):
        lines.append(f"{name:<{width}}  {_pct(iou):>6}  {_pct(acc):>6}")
    lines.append("-" * (width + 16))
    for key, label in (
        ("miou", "mIoU"),
        ("pixel_accuracy", "pixel acc"),
        ("mean_accuracy", "mean acc"),
        ("fw_iou", "fwIoU"),
    ):
        lines.append(f"{label:<{width}}  {_pct(result[key]):>6}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def write_json(path: str | Path, result: dict[str, Any], **extra: Any) -> Path:
    """Write metrics as strict JSON: NaN (class absent) becomes null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_nan_to_none({**result, **extra}), indent=2) + "\n")
    return path
