"""Backbones: ``[N,3,H,W] -> {"os4": low-level features, "out": high-level features}``.

Each is a :class:`Backbone`: it takes ``output_stride`` and has ``feature_channels``,
``feature_info`` (timm-style: name, stride, channels of each returned feature), ``output_stride``
and ``set_output_stride``; strides become atrous rates through ``_stride.stride_plan``.
"""

from ._features import Backbone
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet, resnet50, resnet101
from .resnet_beta import ResNetBeta, resnet50_beta, resnet101_beta
from .vgg import VGG16
from .xception import Xception, xception41, xception65, xception71

__all__ = [
    "Backbone",
    "VGG16",
    "MobileNetV2",
    "ResNet",
    "ResNetBeta",
    "Xception",
    "resnet50",
    "resnet101",
    "resnet50_beta",
    "resnet101_beta",
    "xception41",
    "xception65",
    "xception71",
]
