"""Weight initialisation of the convolutions a model does not load from published weights.

``"torch"`` keeps PyTorch's default (uniform, fan-in, a = sqrt(5)); ``"he"`` is He et al.'s
normal fan-out init for ReLU networks, which torchvision's MobileNetV2 and ResNet use (and so
segmentation_models_pytorch's encoders): with BN after a conv only the weights' scale changes,
but the default starts depthwise filters 7-164x larger in squared norm, and a scale-invariant
weight that starts large learns that much slower at the same learning rate.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import Bottleneck

INITS = ("torch", "he")


def he_init(module: nn.Module) -> None:
    """He normal (fan-out, ReLU) conv weights and zero biases; BN at scale 1, shift 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def initialise(modules: list[nn.Module], init: str) -> None:
    """Apply ``init`` (one of :data:`INITS`) to ``modules`` (the parts built from scratch)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "he":
        for module in modules:
            he_init(module)


def zero_init_last(module: nn.Module) -> None:
    """Zero the scale of the last BN in every residual unit of ``module`` (MobileNetV2's, which
    have a ``zero_init_last`` method, and ResNet's bottlenecks), so each starts as the identity
    or its shortcut's projection (Goyal et al., 2017, Sec. 5.1;
    torchvision's ``zero_init_residual``, timm's ``zero_init_last``). A deep BN network at
    PyTorch's init is chaotic: a 0.1% change of the input turns the backbone's gradient to
    cosine 0.63-0.78 with the exact one, bf16 rounding to 0.15-0.56; with the units muted,
    0.95 and 0.83-0.89 (DeepLabv3+ MobileNetV2, one batch of 8 crops)."""
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
        elif hasattr(m, "zero_init_last"):
            m.zero_init_last()
