"""Loading what atrous writes: a checkpoint or an exported file (ONNX, TorchScript) -> the model
with its classes, palette and normalization, ready for a :class:`~atrous.inference.Predictor`.

The one place that knows the file kinds, so that inference only runs models and evaluation only
scores them; it sits below inference: ``Predictor.from_loaded`` (and ``from_checkpoint`` /
``from_file``, which call :func:`load`) make a predictor of what it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .checkpoint import build_from_spec, load_checkpoint, load_model_state, nonfinite_tensors
from .config import from_dict, resolve_task
from .data.info import DatasetInfo
from .data.palette import voc_colormap
from .errors import CheckpointError
from .export import is_torchscript, load_onnx, load_torchscript
from .models import WEIGHTS, from_weights
from .models.spec import ModelSpec


@dataclass
class Loaded:
    """A model read from ``path`` and what it was trained with (a plain record). ``state`` is
    the whole checkpoint dict (its ``config`` is the recipe) or an exported file's metadata."""

    model: nn.Module
    info: DatasetInfo
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: Path
    spec: ModelSpec | None = None
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    task: str = "semantic"  # the recipe's task (atrous.tasks.TASKS); exported files: semantic


def check_finite_weights(tensors: Iterable[tuple[str, Any]], path: str | Path) -> None:
    """Raise ``CheckpointError`` naming ``path`` and the first tensors (weights, BN running
    statistics) that hold NaN or Inf: such a model predicts noise (argmax of NaN is class 0)."""
    bad = nonfinite_tensors(tensors)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{path}: {len(bad)} tensor(s) hold NaN or Inf ({shown}); the run that wrote it "
            "diverged: use an earlier checkpoint or retrain with a lower learning rate"
        )


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained as, with its weights (eval mode), and return
    it with the checkpoint dict (classes, palette, mean, std, model_spec, config, ...). Weights
    holding NaN or Inf are refused (:func:`check_finite_weights`)."""
    state = load_checkpoint(path)
    if not isinstance(state.get("model"), dict) or "model_spec" not in state:
        raise CheckpointError(f"{path}: lacks 'model' weights or 'model_spec'")
    check_finite_weights(state["model"].items(), path)
    model = build_from_spec(state["model_spec"])
    load_model_state(model, state["model"], path)
    return model.eval(), state


def _info(meta: dict[str, Any], path: Path) -> DatasetInfo:
    for key in ("classes", "palette", "mean", "std"):
        if key not in meta:
            raise CheckpointError(f"{path}: lacks {key!r} in its metadata")
    return DatasetInfo(
        classes=tuple(meta["classes"]), palette=np.asarray(meta["palette"], dtype=np.uint8)
    )


def load(path: str | Path, *, checkpoint_only: bool = False) -> Loaded:
    """Read an atrous checkpoint, or (unless ``checkpoint_only``) an ``atrous export`` file:
    ``.onnx`` runs through ONNX Runtime (extra ``atrous[export]``), a TorchScript archive
    through ``torch.jit``."""
    path = Path(path)
    if not checkpoint_only and path.suffix == ".onnx":
        model, meta = load_onnx(path)
    elif not checkpoint_only and path.is_file() and is_torchscript(path):
        model, meta = load_torchscript(path)
        check_finite_weights(model.state_dict().items(), path)
    else:
        model, meta = load_model(path)
    spec = ModelSpec.from_dict(meta["model_spec"]) if "model_spec" in meta else None
    info = _info(meta, path)
    task = resolve_task(from_dict(meta["config"], str(path))) if meta.get("config") else "semantic"
    return Loaded(model, info, tuple(meta["mean"]), tuple(meta["std"]), path, spec, meta, task)


def load_weights(name: str) -> Loaded:
    """Published weights (:func:`atrous.models.list_weights`), downloaded once and converted,
    with their classes (VOC colours) and preprocessing."""
    model = from_weights(name)
    entry = WEIGHTS[name]
    info = DatasetInfo(classes=entry.classes, palette=voc_colormap())
    return Loaded(model, info, entry.mean, entry.std, Path(name), entry.spec, {})
