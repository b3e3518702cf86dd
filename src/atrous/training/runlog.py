"""The run log: ``train_log.jsonl`` (one JSON object per logged step, then the evaluation) and
TensorBoard scalars when TensorBoard is installed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LOG_NAME = "train_log.jsonl"


def nan_to_none(value: Any) -> Any:
    """Strict JSON: NaN (a class absent from the metrics) becomes null."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


class RunLog:
    """``train_log.jsonl`` (a JSON object per logged step, then the evaluation) and TensorBoard
    scalars when ``torch.utils.tensorboard`` imports (it needs the optional ``tensorboard``)."""

    def __init__(self, out: Path, start: int, enabled: bool) -> None:
        self.path, self.enabled, self.board = out / LOG_NAME, enabled, None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        kept = []
        if start and self.path.is_file():  # resuming: drop what came after the checkpoint
            records = [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
            kept = [r for r in records if "eval" not in r and r.get("step", 0) <= start]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # no tensorboard package: the JSON log alone
            return
        self.board = SummaryWriter(str(out / "tensorboard"), purge_step=start or None)

    def write(self, record: dict[str, Any], **scalars: float) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as file:
            file.write(json.dumps(nan_to_none(record)) + "\n")
        if self.board is not None:
            for name, value in scalars.items():
                self.board.add_scalar(name, value, record["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
