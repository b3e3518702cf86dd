"""``torch.export`` programs (``.pt2``): the model as an ATen graph with symbolic batch, height
and width, saved with ``torch.export.save`` and run by :class:`ProgramModel`.

One program runs at every input size: the models compute their padding with ``%`` on the
symbolic sizes, skip the size-dependent shortcuts while exporting (``torch.compiler.
is_exporting``: the depthwise centre tap, the "no padding needed" early return) and crop the
logits with an index gather (a slice view would add a guard on whether anything was padded).
ASPP's image pooling is ``adaptive_avg_pool2d(x, 1)`` then a resize to the symbolic feature
size, so it bakes in no size either. :func:`export_pt2` checks the program against eager mode
at two sizes other than the example's before it saves. Metadata travels as ``metadata.json``
in the archive's extra files.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ._program import export_program
from ._target import check_export_target

METADATA_FILE = "metadata.json"


def check_parity(
    reference: nn.Module,
    candidate: nn.Module,
    sizes: Sequence[tuple[int, int]],
    *,
    atol: float,
    what: str,
) -> None:
    """Raise ``RuntimeError`` if ``candidate`` differs from ``reference`` (eval mode) by more
    than ``atol`` on a random image at any of ``sizes``."""
    generator = torch.Generator().manual_seed(0)
    param = next(reference.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    for height, width in sizes:
        probe = torch.randn(1, 3, height, width, generator=generator).to(device)
        with torch.no_grad():
            diff = (candidate(probe) - reference.eval()(probe)).abs().max().item()
        if not diff <= atol:
            raise RuntimeError(
                f"{what} disagrees with eager mode at {height}x{width} (max abs diff "
                f"{diff:.3g} > {atol}); the model bakes its input size into the graph"
            )


def export_pt2(
    model: nn.Module,
    path: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    height: int = 65,
    width: int = 65,
    check_sizes: Sequence[tuple[int, int]] = ((97, 81), (50, 77)),
    atol: float = 1e-3,
    calibration: Iterable[Tensor] | None = None,
) -> Path:
    """Export ``model`` with :func:`export_program` at ``height x width``, check it against
    eager mode at ``check_sizes``, and save it to ``path`` with ``metadata`` (str -> JSON-able)
    as ``metadata.json``. Read it back with :func:`load_pt2`. With ``calibration`` (normalized
    images) the program is PT2E int8 instead (:func:`~.quantize.quantize_pt2e`; no parity
    check: int8 differs from eager by design)."""
    path = check_export_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata or {})
    if calibration is None:
        program = export_program(model, height=height, width=width)
        check_parity(model, program.module(), check_sizes, atol=atol, what="the pt2 program")
    else:
        from .quantize import quantize_pt2e

        program, count = quantize_pt2e(model, calibration, height=height, width=width)
        metadata["int8"] = {"calibration_images": count, "method": "pt2e-x86-inductor"}
    extra = {METADATA_FILE: json.dumps(metadata)}
    torch.export.save(program, str(path), extra_files=extra)
    return path


class ProgramModel(nn.Module):
    """A loaded ``torch.export`` program behind the ``nn.Module`` call of a Predictor. The
    program is held outside the module tree: exported modules refuse ``.eval()``, and the
    Predictor must not move or copy weights that belong to the program."""

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        object.__setattr__(self, "program", program)
        object.__setattr__(self, "_run", program.module())

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x.float().contiguous())


def load_pt2(path: str | Path) -> tuple[ProgramModel, dict[str, Any]]:
    """A program saved by :func:`export_pt2` as a callable model, and its metadata."""
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path), extra_files=extra)
    except Exception as err:  # torch raises many types for damaged archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable pt2 (torch.export) file ({first})") from None
    try:
        meta = json.loads(extra[METADATA_FILE] or "{}")
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata.json is not JSON ({err})") from None
    return ProgramModel(program), meta
