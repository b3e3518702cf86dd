"""The ranges of a recipe's values, checked where the recipe enters (load, ``--set``), so that a
bad value is one error naming it before any work starts, not a failure deep in torch later."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

Rule = tuple[str, Callable[[Any], bool], str]

LOGGER_NAMES = ("jsonl", "tensorboard", "mlflow", "wandb")
"""What ``train.loggers`` may name (``atrous.training.loggers``)."""

RULES: tuple[Rule, ...] = (
    ("train.steps", lambda v: v >= 1, "must be 1 or more"),
    ("train.batch_size", lambda v: v >= 1, "must be 1 or more (images per process)"),
    ("train.accumulate", lambda v: v >= 1, "must be 1 or more micro-batches"),
    ("train.checkpoint_every", lambda v: v >= 1, "must be 1 or more steps"),
    ("train.log_every", lambda v: v >= 1, "must be 1 or more steps"),
    ("train.lr", lambda v: math.isfinite(v) and v > 0, "must be a positive number"),
    ("train.momentum", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("train.weight_decay", lambda v: math.isfinite(v) and v >= 0, "must be 0 or more"),
    ("train.poly_power", lambda v: math.isfinite(v) and v >= 0, "must be 0 or more"),
    ("train.warmup_steps", lambda v: v >= 0, "must be 0 or more steps"),
    ("train.head_lr_mult", lambda v: math.isfinite(v) and v > 0, "must be a positive number"),
    ("train.top_k_percent", lambda v: 0 < v <= 1, "must be in (0, 1]: the share of pixels kept"),
    ("train.hard_mining_steps", lambda v: v >= 0, "must be 0 or more steps"),
    ("train.aux_weight", lambda v: math.isfinite(v) and v >= 0, "must be 0 or more"),
    ("train.precise_bn", lambda v: v >= 0, "must be 0 (off) or more batches"),
    ("train.save_estimates", lambda v: v >= 0, "must be 0 (off) or more images"),
    ("train.clip_grad_norm", lambda v: v is None or v > 0, "must be a positive norm or null"),
    ("train.bn_momentum", lambda v: v is None or 0 <= v <= 1, "must be in [0, 1] or null"),
    ("train.resume", lambda v: v in (True, False, "auto"), "must be true, false or auto"),
    ("train.eval_every", lambda v: v >= 0, "must be 0 (only at the end) or more steps"),
    ("train.early_stop", lambda v: v >= 0, "must be 0 (never) or more evaluations"),
    (
        "train.loggers",
        lambda v: set(v) <= set(LOGGER_NAMES),
        f"may name {', '.join(LOGGER_NAMES)}",
    ),
    ("data.crop_size", lambda v: v >= 1, "must be 1 or more pixels"),
    ("data.scale_step", lambda v: v >= 0, "must be 0 (continuous) or more"),
    ("data.num_workers", lambda v: v >= 0, "must be 0 (the main process) or more"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("data.strong_fraction", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    (
        "data.scale_range",
        lambda v: len(v) == 2 and 0 < v[0] <= v[1],
        "must be [low, high] with 0 < low <= high, e.g. [0.5, 2.0]",
    ),
)
"""(dotted key, test, what a valid value is)."""


def _value(cfg: Any, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def check_values(cfg: Any, source: str = "config") -> None:
    """Raise one :class:`ConfigError` naming ``source`` and every value outside its range."""
    bad = []
    for key, valid, expected in RULES:
        value = _value(cfg, key)
        try:
            ok = bool(valid(value))
        except TypeError:
            ok = False
        if not ok:
            shown = list(value) if isinstance(value, tuple) else value
            bad.append(f"{key} = {shown!r}: {expected}")
    if cfg.train.early_stop and not cfg.train.eval_every:
        bad.append("train.early_stop needs train.eval_every (evaluations to count)")
    if bad:
        raise ConfigError(f"{source}: " + "; ".join(bad))
