"""Machine-readable form of a metrics result (strict JSON)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


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
