"""Checkpoints: what rebuilds a model for inference (any stage reads them) and resumes training."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .models.spec import ModelSpec

FORMAT = "atrous-checkpoint/1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if not found:
            raise CheckpointError(f"{path}: not a readable checkpoint (corrupt file)") from None
        what = f" ({found.group(1)})"
        raise CheckpointError(
            f"{path}: refused: it holds pickled Python objects{what} that "
            "torch.load(weights_only=True) will not run; atrous checkpoints hold only tensors "
            "and plain data"
        ) from None
    except Exception as err:  # torch raises many types for corrupt or foreign files
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an atrous checkpoint (no {FORMAT!r} marker)")
    return state


def load_model_state(model: nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load weights strictly, or raise naming the keys or shapes that do not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    mismatched = [
        f"{k} {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape", mismatched),
        ):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise CheckpointError(f"{path}: checkpoint is from a different model: " + "; ".join(parts))
    model.load_state_dict(weights)


def build_from_spec(spec: ModelSpec | dict[str, Any]) -> nn.Module:
    """The model a checkpoint's ``model_spec`` describes (a :class:`ModelSpec` or its dict, old
    checkpoints' dicts included), without downloading published weights."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec.from_dict(spec)
    return spec.without_downloads().build()


def nonfinite_tensors(tensors: Iterable[tuple[str, Any]]) -> list[str]:
    """The names of the floating-point tensors (weights, BN statistics) holding NaN or Inf."""
    return [
        name
        for name, tensor in tensors
        if isinstance(tensor, torch.Tensor)
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor.detach()).all())
    ]
