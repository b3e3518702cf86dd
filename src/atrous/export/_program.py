"""A model as a ``torch.export`` program with symbolic batch, height and width: what the pt2
export saves, the dynamo ONNX exporter converts and PT2E quantizes (see :mod:`.pt2`)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn

from ..errors import AtrousError
from ._exportable import check_exportable

# The symbolic height/width range a program accepts. At least 33: below, an OS16/OS32 network's
# coarsest features are 1x1, a size torch.export specialises (broadcasts) rather than keeps
# symbolic.
MIN_SIDE, MAX_SIDE = 33, 8192


def dynamic_image_shapes(name: str = "x") -> dict[str, dict[int, Any]]:
    """``dynamic_shapes`` for a model's one image argument ``name``: batch, height and width
    symbolic (height/width from :data:`MIN_SIDE` to :data:`MAX_SIDE`)."""
    dim = torch.export.Dim
    return {
        name: {
            0: dim("batch", min=1, max=1024),
            2: dim("height", min=MIN_SIDE, max=MAX_SIDE),
            3: dim("width", min=MIN_SIDE, max=MAX_SIDE),
        }
    }


def _input_name(model: nn.Module) -> str:
    params = list(inspect.signature(model.forward).parameters)
    return params[0] if params else "x"


def export_program(
    model: nn.Module, *, height: int = 65, width: int = 65
) -> torch.export.ExportedProgram:
    """``model`` (eval mode) as a ``torch.export`` program, batch/height/width dynamic."""
    check_exportable(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros(2, 3, height, width, device=device)  # batch 2: 1 would specialise
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(
                model,
                (example,),
                dynamic_shapes=dynamic_image_shapes(_input_name(model)),
                # A condition on a size (a decoder's skip fits the upsampled map, Auto-DeepLab's
                # cells line up) becomes an assert in the program instead of a guard that pins
                # the size: the program runs at every size where the eager model runs.
                prefer_deferred_runtime_asserts_over_guards=True,
            )
    except Exception as err:  # torch.export raises many kinds (guards, unsupported ops)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AtrousError(
            f"{type(model).__name__} does not export as a torch.export program with dynamic "
            f"sizes ({first}); export it as --format onnx or torchscript instead"
        ) from err
    finally:
        model.train(was_training)
