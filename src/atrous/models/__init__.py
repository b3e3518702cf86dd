"""Models: ``[N,3,H,W]`` images -> ``[N,K,H,W]`` logits (ABC-CNN: images and questions -> answer
logits)."""

from .abc_cnn import ABCCNN, abc_cnn
from .auto_deeplab import auto_deeplab
from .builders import MODELS, build_model
from .convert.card import metrics_from_run
from .convert.registry import (
    WEIGHTS,
    Weights,
    from_pretrained,
    from_weights,
    list_weights,
    push_to_hub,
    save_pretrained,
)
from .convert.tf import from_tf_checkpoint, tf_variable_map
from .convert.timm import from_timm
from .convert.torchvision import from_torchvision
from .deeplab import (
    DeepLab,
    deeplabv1,
    deeplabv2,
    deeplabv3,
    deeplabv3plus,
    mobile_deeplabv3,
)
from .factory import BACKBONES
from .hazn import HAZN, hazn
from .heads.decoders import DECODERS, BilinearAdditiveUpsample
from .masklab import MaskLab, masklab
from .panoptic import PanopticDeepLab, panoptic_deeplab
from .personlab import PersonLab, personlab
from .spec import WRAPPERS, ModelSpec
from .summary import ModelSummary, summary
from .wrappers import ScaleAttentionDeepLab, with_scale_attention

__all__ = [
    "ABCCNN",
    "abc_cnn",
    "BACKBONES",
    "BilinearAdditiveUpsample",
    "DECODERS",
    "MODELS",
    "ModelSummary",
    "DeepLab",
    "auto_deeplab",
    "HAZN",
    "hazn",
    "build_model",
    "MaskLab",
    "masklab",
    "panoptic_deeplab",
    "PersonLab",
    "personlab",
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
    "metrics_from_run",
    "with_scale_attention",
]
