"""TorchScript export: ``torch.jit.trace`` at one size, checked at another.

Tracing (not scripting) is used because the backbones return feature dicts keyed by stride and
use Python-level control flow (output-stride switches) that ``torch.jit.script`` does not accept.
Traced ``interpolate(size=x.shape[-2:])`` and ``adaptive_avg_pool2d`` keep reading the size from
the input tensor, so the traced module runs at other heights/widths; :func:`export_torchscript`
verifies that by running a second size against eager mode before saving. Metadata travels in the
archive's ``_extra_files`` as ``metadata.json``.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ._exportable import check_exportable
from ._target import check_export_target

METADATA_FILE = "metadata.json"


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    height: int = 65,
    width: int = 65,
    check_size: tuple[int, int] = (97, 81),
    atol: float = 1e-3,
) -> Path:
    """Trace ``model`` in eval mode at ``height x width``, check it at ``check_size``, save.

    ``metadata`` (str -> JSON-able) is stored as ``metadata.json`` in the archive; read it
    back with :func:`load_torchscript`. Raises ``RuntimeError`` if the traced module disagrees
    with eager mode at ``check_size`` (a size baked into the trace).
    """
    check_exportable(model)
    path = check_export_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # jit.trace deprecation notice
            traced = torch.jit.trace(model, torch.zeros(1, 3, height, width, device=device))
            probe = torch.randn(1, 3, *check_size, device=device)
            diff = (traced(probe) - model(probe)).abs().max().item()
        if diff > atol:
            raise RuntimeError(
                f"TorchScript trace at {height}x{width} disagrees with eager mode at "
                f"{check_size[0]}x{check_size[1]} (max abs diff {diff:.3g} > {atol}); the model "
                "bakes its input size into the trace"
            )
        extra = {METADATA_FILE: json.dumps(dict(metadata or {}))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.save deprecation notice
            torch.jit.save(traced, str(path), _extra_files=extra)
    finally:
        model.train(was_training)
    return path


def load_torchscript(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a module saved by :func:`export_torchscript` and its metadata dict."""
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit.load deprecation notice
        try:
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
        except Exception as err:  # torch raises RuntimeError and others for damaged archives
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: not a readable TorchScript file ({first})") from None
    raw = extra[METADATA_FILE]
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return module, json.loads(raw) if raw else {}
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata.json is not JSON ({err})") from None


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (its zip holds ``code/``), not a checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())
