"""The run log: ``train_log.jsonl`` (one JSON object per logged step, then the evaluations) and
the trackers ``train.loggers`` names (:mod:`.loggers`: TensorBoard, MLflow, W&B)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .loggers import open_loggers

LOG_NAME = "train_log.jsonl"


def nan_to_none(value: Any) -> Any:
    """Strict JSON: NaN (a class absent from the metrics) becomes null."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


class RunLog:
    """``train_log.jsonl`` (a JSON object per logged step, then the evaluations) and the
    trackers of ``loggers`` (TensorBoard by default, when it imports), given the scalars of each
    record, ``config`` (the recipe) and the run's files (:meth:`artifact`)."""

    def __init__(
        self,
        out: Path,
        start: int,
        enabled: bool,
        *,
        loggers: tuple[str, ...] = ("jsonl", "tensorboard"),
        config: dict[str, Any] | None = None,
    ) -> None:
        self.path, self.enabled, self.trackers = out / LOG_NAME, enabled, []
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        kept = []
        if start and self.path.is_file():  # resuming: drop what came after the checkpoint
            records = [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
            kept = [r for r in records if "eval" not in r and r.get("step", 0) <= start]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.trackers = open_loggers(tuple(loggers), out, start, config or {})

    def write(self, record: dict[str, Any], **scalars: float) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as file:
            file.write(json.dumps(nan_to_none(record)) + "\n")
        finite = {k: float(v) for k, v in scalars.items() if math.isfinite(v)}
        for tracker in self.trackers:
            tracker.scalars(record["step"], finite)

    def artifact(self, path: Path) -> None:
        """Hand a file of the run (metrics, best checkpoint, picture) to the trackers."""
        if self.enabled and Path(path).is_file():
            for tracker in self.trackers:
                tracker.artifact(Path(path))

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
