"""Model kinds tracing cannot capture."""

from __future__ import annotations

from torch import nn

from ..errors import AtrousError
from ..models.hazn import HAZN
from ..models.wrappers.crf_as_rnn import DenseCRF
from ..models.wrappers.domain_transform import DomainTransform


def check_exportable(model: nn.Module) -> None:
    """Refuse models with a refinement layer. The domain transform (DT-EdgeNet) is a Python
    loop over pixels inside an autograd Function, which tracing records wrongly (checked: the
    ONNX graph disagreed with eager by 8 logits); the dense CRF builds a lattice with sparse
    tensors and data-dependent sizes, which neither exporter supports."""

    if hasattr(model, "forward_panoptic"):
        raise AtrousError(
            "panoptic models cannot be exported yet: the file would hold the semantic logits "
            "alone; deploy them with atrous.tasks.panoptic_decode.predict_panoptic"
        )
    if hasattr(model, "num_keypoints"):
        raise AtrousError(
            "PersonLab models cannot be exported yet: their eval output is a dict of fields "
            "(heatmaps, offsets, segmentation) for atrous.tasks.personlab.decode; deploy them "
            "with atrous.Predictor and decode"
        )
    if hasattr(model, "segment_boxes"):
        raise AtrousError(
            "MaskLab models cannot be exported yet: detection (RPN, NMS) and per-box masks "
            "have data-dependent shapes; deploy them with atrous.Predictor"
        )
    if isinstance(model, HAZN):  # its forward refuses tracing; torch.export must not get that far
        raise AtrousError(
            "HAZN models cannot be exported yet: their regions and zooms have data-dependent "
            "shapes; deploy them with atrous.Predictor, or export model.fcn, the FCN without "
            "the zoom"
        )
    for module in model.modules():
        if isinstance(module, (DomainTransform, DenseCRF)):
            name = "a domain transform" if isinstance(module, DomainTransform) else "a dense CRF"
            raise AtrousError(
                f"models with {name} layer cannot be exported to ONNX, TorchScript or pt2 (it does "
                "not trace); deploy them with atrous.Predictor"
            )
