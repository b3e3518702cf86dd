"""The one model kind tracing cannot capture."""

from __future__ import annotations

from torch import nn

from ..errors import AtrousError


def check_exportable(model: nn.Module) -> None:
    """Refuse models with a domain transform (DT-EdgeNet): its recursive filter is a Python
    loop over pixels inside an autograd Function, which tracing records wrongly (checked: the
    ONNX graph disagreed with eager by 8 logits)."""
    from ..refine.domain_transform import DomainTransform

    if any(isinstance(m, DomainTransform) for m in model.modules()):
        raise AtrousError(
            "models with a domain transform (DT-EdgeNet) cannot be exported to ONNX or "
            "TorchScript: its recursive filter does not trace; deploy it with atrous.Predictor"
        )
