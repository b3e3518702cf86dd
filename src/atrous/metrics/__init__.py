"""Labels -> numbers."""

from .confusion import ConfusionMatrix
from .instances import InstanceAP
from .keypoints import PersonAP, oks
from .panoptic import PanopticQuality, ParsingCovering
from .report import write_json
from .trimap import TrimapIoU, boundary_pixels, trimap_band
from .vqa import AttentionIoU, QAAccuracy, attention_iou, vqa_accuracy

__all__ = [
    "AttentionIoU",
    "QAAccuracy",
    "attention_iou",
    "vqa_accuracy",
    "ConfusionMatrix",
    "InstanceAP",
    "PanopticQuality",
    "ParsingCovering",
    "PersonAP",
    "TrimapIoU",
    "boundary_pixels",
    "oks",
    "trimap_band",
    "write_json",
]
