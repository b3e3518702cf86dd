"""Carry torchvision models' weights into atrous models with identical outputs.

``from_torchvision`` takes a torchvision ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` or a
bare torchvision ResNet-50/101 and returns the matching atrous module with its weights.
Downloading published weights is not done here: build the torchvision model with its own
``weights=`` argument, then convert it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet as TorchvisionResNet
from torchvision.models.resnet import Bottleneck
from torchvision.models.segmentation import DeepLabV3 as TorchvisionDeepLabV3

from ..backbones.resnet import ResNet
from ..deeplab import DeepLab
from ..heads.aspp import ASPP, TORCHVISION_ASPP_DROPOUT, rates_for
from ..layers import conv_bn_relu


def _resnet_layout(model: nn.Module, where: str) -> tuple[tuple[int, ...], int]:
    """Units per stage and output stride of a torchvision ResNet (or its backbone getter)."""
    stages = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if any(stage is None for stage in stages) or not all(
        isinstance(unit, Bottleneck) for stage in stages for unit in stage
    ):
        raise ValueError(
            f"{where}: expected a torchvision ResNet built from Bottleneck units "
            "(resnet50 / resnet101); ResNet-18/34 (BasicBlock) have no atrous counterpart here"
        )
    output_stride = 4
    for stage in stages:
        output_stride *= stage[0].conv2.stride[0]
    return tuple(len(stage) for stage in stages), output_stride


def _resnet(model: nn.Module, where: str) -> ResNet:
    layers, output_stride = _resnet_layout(model, where)
    return ResNet(layers=layers, output_stride=output_stride)


def _load(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{where}: weights do not fit the atrous model (a ResNeXt / wide ResNet or a "
            f"modified torchvision model?): {error}"
        ) from None


def _from_resnet(tv_model: TorchvisionResNet) -> ResNet:
    net = _resnet(tv_model, "from_torchvision(ResNet)")
    state = {k: v for k, v in tv_model.state_dict().items() if not k.startswith("fc.")}
    _load(net, state, "from_torchvision(ResNet)")
    return net


def _classifier_key(key: str) -> str:
    """torchvision ``DeepLabHead`` names -> atrous ``head`` / ``classifier`` names."""
    index, _, rest = key.partition(".")
    if index == "0":  # torchvision ASPP
        branch, _, rest = rest.partition(".")
        if branch == "convs":
            number, _, rest = rest.partition(".")
            if number == "4":  # ASPPPooling(pool, conv, BN, ReLU)
                layer, _, rest = rest.partition(".")
                return f"head.pooling.conv.{int(layer) - 1}.{rest}"
            return f"head.branches.{number}.{rest}"
        return f"head.project.0.{rest}"  # project: conv, BN, ReLU, dropout
    # Sequential(ASPP, conv 3x3, BN, ReLU, conv 1x1) after the ASPP.
    return {"1": "classifier.0.0", "2": "classifier.0.1", "4": "classifier.1"}[index] + "." + rest


def _from_deeplabv3(tv_model: TorchvisionDeepLabV3) -> DeepLab:
    where = "from_torchvision(DeepLabV3)"
    net = _resnet(tv_model.backbone, where)
    aspp_tv = tv_model.classifier[0]
    rates = tuple(branch[0].dilation[0] for branch in list(aspp_tv.convs)[1:-1])
    channels = aspp_tv.project[0].out_channels
    num_classes = tv_model.classifier[-1].out_channels
    os = net.output_stride
    rates_at_os16 = tuple(r * os // 16 for r in rates)  # as ASPP takes them
    if rates_for(os, rates_at_os16) != rates:
        raise ValueError(f"{where}: ASPP rates {rates} at OS{os} do not scale to OS16")
    aspp = ASPP(
        net.feature_channels["out"],
        channels,
        rates_at_os16,
        output_stride=os,
        dropout=TORCHVISION_ASPP_DROPOUT,
    )
    classifier = nn.Sequential(
        conv_bn_relu(channels, channels, 3), nn.Conv2d(channels, num_classes, 1)
    )
    # torchvision runs its network on the input as it is; so does the converted model.
    model = DeepLab(net, aspp, classifier, num_classes=num_classes, pad_input=False)
    state: dict[str, torch.Tensor] = {}
    for key, value in tv_model.state_dict().items():
        if key.startswith("backbone."):
            state[key] = value
        elif key.startswith("classifier."):
            state[_classifier_key(key.removeprefix("classifier."))] = value
        # aux_classifier.* (the FCN head on layer3) is a training aid: dropped.
    _load(model, state, where)
    return model


def from_torchvision(tv_model: nn.Module) -> nn.Module:
    """An atrous model with the weights and eval-mode outputs of a torchvision model.

    - ``torchvision.models.segmentation.deeplabv3_resnet50`` / ``_resnet101`` -> :class:`DeepLab`
      at the torchvision model's output stride (8). torchvision's head differs from the TF
      reference DeepLabv3 head: ASPP rates 12/24/36 at OS8, dropout 0.5 after the projection,
      and an extra 3x3 conv-BN-ReLU before the 1x1 classifier, so the returned classifier is
      ``Sequential(conv 3x3 + BN + ReLU, conv 1x1)``. The auxiliary FCN head is dropped.
    - a torchvision ``resnet50`` / ``resnet101`` -> :class:`~atrous.models.backbones.resnet.ResNet`
      (without ``fc``), at the output stride its ``replace_stride_with_dilation`` gives.

    Changing the output stride afterwards (``set_output_stride``) keeps the weights.
    The converted model keeps torchvision's unpadded forward (``pad_input=False``), so it equals
    the original at every size; set ``model.pad_input = True`` for atrous's aligned forward
    (inputs padded to a multiple of the output stride, see :mod:`atrous.models.align`), which
    the weights' own training crops (480, a multiple of 8) were consistent with.
    """
    if isinstance(tv_model, TorchvisionDeepLabV3):
        return _from_deeplabv3(tv_model)
    if isinstance(tv_model, TorchvisionResNet):
        return _from_resnet(tv_model)
    raise TypeError(
        f"from_torchvision takes a torchvision DeepLabV3 (ResNet backbone) or ResNet, "
        f"got {type(tv_model).__name__}"
    )
