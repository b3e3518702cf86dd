"""Weight initialisation of the convolutions a model does not load from published weights.

``"torch"`` keeps PyTorch's default (uniform, fan-in, a = sqrt(5)); ``"he"`` is He et al.'s
normal fan-out init for ReLU networks, which torchvision's MobileNetV2 and ResNet use (and so
segmentation_models_pytorch's encoders): with BN after a conv only the weights' scale changes,
but the default starts depthwise filters 7-164x larger in squared norm, and a scale-invariant
weight that starts large learns that much slower at the same learning rate.
"""

from __future__ import annotations

from torch import nn

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
