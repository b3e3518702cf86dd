"""Loading what atrous writes: a checkpoint or an exported file (ONNX, TorchScript, pt2) -> the
model with its classes, palette and normalization, ready for a :class:`~atrous.inference.Predictor`.

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
from .export import MODEL_KINDS, describe, file_kind, load_onnx, load_pt2, load_torchscript
from .export.kinds import CHECKPOINT, ONNX, PT2, TORCHSCRIPT
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
    kind: str = "checkpoint"  # atrous.export.file_kind: checkpoint, onnx, torchscript, pt2

    @property
    def is_exported(self) -> bool:
        """Whether the model is an exported file's (run as it is: no output stride change, no
        fast path), not an eager model rebuilt from a checkpoint or weights."""
        return self.kind != "checkpoint"


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


def _read_model(path: Path, kind: str) -> tuple[nn.Module, dict[str, Any]]:
    if kind == ONNX:
        return load_onnx(path)
    if kind == TORCHSCRIPT:
        model, meta = load_torchscript(path)
        check_finite_weights(model.state_dict().items(), path)
        return model, meta
    if kind == PT2:
        model, meta = load_pt2(path)
        check_finite_weights(model.program.state_dict.items(), path)
        return model, meta
    return load_model(path)  # a checkpoint, or a file nothing recognised: its reader says why


def load(path: str | Path, *, checkpoint_only: bool = False) -> Loaded:
    """Read an atrous checkpoint or an ``atrous export`` file, told apart by content
    (:func:`~atrous.export.file_kind`): ONNX (fp32 or int8) runs through ONNX Runtime (extra
    ``atrous[export]``), a TorchScript archive through ``torch.jit``, a pt2 program through
    ``torch.export``. A file of another kind (an image, a text file, ...) is refused with what
    it is; ``checkpoint_only`` refuses exported files too (for commands that need the eager
    model: export, crf-search)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise CheckpointError(f"{path}: checkpoint {what} (give a checkpoint or exported file)")
    kind = file_kind(path)
    if kind and kind not in MODEL_KINDS:
        raise CheckpointError(
            f"{path} is {kind}, not a model: give an atrous checkpoint or a file from "
            "`atrous export` (ONNX, TorchScript, pt2)"
        )
    if checkpoint_only and kind not in (CHECKPOINT, ""):
        raise CheckpointError(
            f"{path} is {describe(kind)}; this command needs the atrous checkpoint it was "
            "exported from (eval, predict and serve run exported files)"
        )
    model, meta = _read_model(path, kind)
    spec = ModelSpec.from_dict(meta["model_spec"]) if "model_spec" in meta else None
    info = _info(meta, path)
    task = resolve_task(from_dict(meta["config"], str(path))) if meta.get("config") else "semantic"
    mean, std = tuple(meta["mean"]), tuple(meta["std"])
    return Loaded(model, info, mean, std, path, spec, meta, task, kind or CHECKPOINT)


def load_weights(name: str) -> Loaded:
    """Published weights (:func:`atrous.models.list_weights`), downloaded once and converted,
    with their classes (VOC colours) and preprocessing."""
    model = from_weights(name)
    entry = WEIGHTS[name]
    info = DatasetInfo(classes=entry.classes, palette=voc_colormap())
    return Loaded(model, info, entry.mean, entry.std, Path(name), entry.spec, {})
