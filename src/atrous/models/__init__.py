"""Models: ``[N,3,H,W]`` images -> ``[N,K,H,W]`` logits."""

from .auto_deeplab import auto_deeplab
from .convert import from_torchvision
from .convert_tf import from_tf_checkpoint, tf_variable_map
from .convert_timm import from_timm
from .decoders import DECODERS, BilinearAdditiveUpsample
from .deeplab import (
    BACKBONES,
    MODELS,
    DeepLab,
    build_model,
    deeplabv1,
    deeplabv2,
    deeplabv3,
    deeplabv3plus,
    mobile_deeplabv3,
)
from .panoptic_deeplab import PanopticDeepLab, panoptic_deeplab
from .registry import (
    WEIGHTS,
    Weights,
    from_pretrained,
    from_weights,
    list_weights,
    push_to_hub,
    save_pretrained,
)
from .scale_attention import ScaleAttentionDeepLab, with_scale_attention
from .spec import WRAPPERS, ModelSpec
from .summary import ModelSummary, summary

__all__ = [
    "BACKBONES",
    "BilinearAdditiveUpsample",
    "DECODERS",
    "MODELS",
    "ModelSummary",
    "DeepLab",
    "auto_deeplab",
    "build_model",
    "panoptic_deeplab",
    "PanopticDeepLab",
    "deeplabv1",
    "deeplabv2",
    "deeplabv3",
    "deeplabv3plus",
    "from_tf_checkpoint",
    "from_timm",
    "tf_variable_map",
    "from_torchvision",
    "mobile_deeplabv3",
    "ModelSpec",
    "ScaleAttentionDeepLab",
    "WRAPPERS",
    "summary",
    "WEIGHTS",
    "Weights",
    "from_pretrained",
    "from_weights",
    "list_weights",
    "push_to_hub",
    "save_pretrained",
    "with_scale_attention",
]
