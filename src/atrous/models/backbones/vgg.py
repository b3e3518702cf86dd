"""VGG-16 (Simonyan & Zisserman, 2015) in DeepLab v1 form (Chen et al., 2015, Sec. 3.1).

DeepLab v1 keeps VGG-16's 13 conv layers and changes its pooling: every max pool is 3x3 with
padding 1 (instead of 2x2), and the last two pools run at stride 1 so the features stay at
output stride 8; the conv5 layers after them use atrous rate 2 ("hole algorithm"). The fully
connected layers become the head (:class:`atrous.models.heads.largefov.LargeFOV`).

Module indices follow ``torchvision.models.vgg16().features`` (conv, ReLU, ..., pool), so its
ImageNet conv weights load strictly; the pools have no parameters, and their numerics differ
from torchvision's 2x2 pools by design.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import set_dilation
from ._features import Backbone
from ._stride import stride_plan

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
"""Output channels of each 3x3 conv, per block; every block ends in a max pool (VGG config D)."""

LOW_LEVEL_BLOCK = 1
"""The block whose pool (pool2) ends the stride-4 stage: the ``"os4"`` features, 128 channels."""


class VGG16(Backbone):
    """VGG-16 conv layers with DeepLab's pooling, returning ``{"os4": ..., "out": ...}``.

    ``output_stride`` 8 is the DeepLab v1 setting (pool4 and pool5 at stride 1, conv5 at rate
    2); 16 and 32 come from the same rule (:func:`stride_plan`): a pool's stride 2 past the
    output stride becomes stride 1 and the convs after it get the doubled rate. Pools themselves
    stay undilated, as in the released v1 model.
    """

    def __init__(self, *, output_stride: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for block in VGG16_BLOCKS:
            for out_channels in block:
                layers += [
                    nn.Conv2d(in_channels, out_channels, 3, padding=1),
                    nn.ReLU(inplace=True),
                ]
                in_channels = out_channels
            # DeepLab v1 (Sec. 3.1, released prototxt): 3x3 pools, pad 1, nominal stride 2.
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.features = nn.Sequential(*layers)
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        self._split = pools[LOW_LEVEL_BLOCK] + 1
        self.feature_channels = {"os4": VGG16_BLOCKS[LOW_LEVEL_BLOCK][-1], "out": in_channels}
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Turn pool strides past ``output_stride`` into atrous rates; weights are untouched."""
        units = [m for m in self.features if isinstance(m, nn.Conv2d | nn.MaxPool2d)]
        nominal = [2 if isinstance(u, nn.MaxPool2d) else 1 for u in units]
        for unit, (stride, dilation) in zip(
            units, stride_plan(nominal, output_stride), strict=True
        ):
            if isinstance(unit, nn.MaxPool2d):
                unit.stride = stride
            else:
                set_dilation(unit, dilation)
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        low = self.features[: self._split](x)
        return {"os4": low, "out": self.features[self._split :](low)}
