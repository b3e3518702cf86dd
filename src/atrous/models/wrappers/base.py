"""What a wrapped model (DT-EdgeNet, CRF-as-RNN, scale attention, ...) passes through from the
model inside."""

from __future__ import annotations

from torch import nn


class WrappedModel(nn.Module):
    """Base of the models that put a layer around a segmentation ``model``: keeps it as
    ``self.model`` and passes ``num_classes``, ``output_stride`` and ``set_output_stride``
    through, so predictors, training and checkpoints treat the whole like the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_classes = getattr(model, "num_classes", None)

    @property
    def output_stride(self) -> int:
        return self.model.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        return self.model.output_strides

    def set_output_stride(self, output_stride: int) -> None:
        self.model.set_output_stride(output_stride)
