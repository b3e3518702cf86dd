"""Validation while training (``train.eval_every``) and at its end: the task's evaluator over
the validation split (each rank on its shard, counts reduced), ``best.pt`` kept for the best
value of ``train.best_metric`` and early stopping after ``train.early_stop`` evaluations
without a gain."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Subset

from ..checkpoint import save_checkpoint
from ..errors import ConfigError
from ..evaluation import Examples, accumulate, comparison_grid
from ..inference import Predictor
from .distributed import barrier
from .optim import freeze_batchnorm

BEST_NAME = "best.pt"


def metric_value(metrics: dict[str, Any], key: str) -> float:
    """``metrics[key]``, with dotted keys reaching into sections (``panoptic.pq``)."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(
                f"train.best_metric = {key!r} is not in the evaluation's results; "
                f"its keys: {', '.join(k for k in metrics if not isinstance(metrics[k], list))}"
            )
        value = value[part]
    return float(value)


class Validation:
    """The run's validation state: the best value so far (where it was reached), how many
    evaluations since brought no gain; both travel in the checkpoint (exact resume)."""

    def __init__(self, run: Any, state: dict[str, Any] | None = None) -> None:
        t = run.cfg.train
        self.run = run
        self.metric = t.best_metric or run.task.main_metric
        self.patience = t.early_stop
        state = state or {}
        self.best: dict[str, Any] | None = state.get("best")
        self.stale = int(state.get("stale", 0))

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "stale": self.stale}

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.stale >= self.patience

    def evaluate(self, *, progress: bool, picture: Path | None = None) -> tuple[dict, float]:
        """The task's metrics on the validation split (sharded over ranks, counts reduced)
        and the seconds it took; the model is back in its training mode afterwards.
        ``picture``: image | ground truth | prediction of rank 0's first images, written
        there."""
        run, d = self.run, self.run.cfg.data
        start = time.perf_counter()
        training = run.model.training
        predictor = Predictor(
            run.model, mean=d.mean, std=d.std, device=run.device, info=run.train_set.info
        )
        evaluator = run.task.evaluator(predictor, run.train_set.num_classes)
        world = run.world
        shard = Subset(run.val_set, range(world.rank, len(run.val_set), world.world_size))
        accumulators: dict[str, Any] = {"metrics": evaluator}
        if picture is not None and world.is_main:
            accumulators["examples"] = Examples(limit=6)
        accumulate(predictor, shard, accumulators, task=run.task, progress=progress)
        if "examples" in accumulators and accumulators["examples"].rows:
            grid = comparison_grid(accumulators["examples"].compute(), run.train_set.palette)
            Image.fromarray(grid).save(picture)
        evaluator.all_reduce(run.device)
        metrics = evaluator.compute()
        metrics.pop("confusion_matrix", None)
        if training:
            run.net.train()
            if run.cfg.train.freeze_bn:
                freeze_batchnorm(run.model)
        return metrics, time.perf_counter() - start

    def record(self, step: int, metrics: dict[str, Any]) -> bool:
        """Take one evaluation's result: whether it is the best so far (then ``best.pt`` holds
        this step's weights, written by rank 0)."""
        value = metric_value(metrics, self.metric)
        improved = math.isfinite(value) and (self.best is None or value > self.best["value"])
        if improved:
            self.best, self.stale = {"metric": self.metric, "value": value, "step": step}, 0
            if self.run.world.is_main:
                path = Path(self.run.cfg.train.out_dir) / BEST_NAME
                snapshot = self.run.snapshot(step)
                snapshot["best"] = dict(self.best)
                snapshot["metrics"] = metrics
                save_checkpoint(path, snapshot)
            barrier(self.run.world)
        else:
            self.stale += 1
        return improved
