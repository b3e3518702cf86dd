"""DeepLab v1 "LargeFOV" head (Chen et al., 2015, Sec. 4): VGG-16's fc layers as atrous convs.

fc6 becomes a 3x3 conv with atrous rate 12 and 1024 channels (instead of 7x7 x 4096), giving a
large field of view at a fraction of the cost; fc7 is a 1x1 conv with 1024 channels and fc8 a
1x1 conv to class scores. The head outputs logits, so the v1 model is
``DeepLab(VGG16(), LargeFOV(512, num_classes), nn.Identity(), num_classes=num_classes)``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..backbones._stride import check_output_stride
from ..layers import set_dilation


def fc6_rate(output_stride: int, rate_at_os8: int = 12) -> int:
    """fc6's atrous rate at ``output_stride``: the paper's 12 at OS8, 6 at OS16, 3 at OS32.

    The rate scales inversely with the output stride so the field of view in input pixels
    stays the same.
    """
    check_output_stride(output_stride)
    return max(1, rate_at_os8 * 8 // output_stride)


class LargeFOV(nn.Sequential):
    """fc6 (3x3, rate 12 at OS8, 1024) -> ReLU -> dropout -> fc7 (1x1, 1024) -> ReLU ->
    dropout -> fc8 (1x1, ``num_classes``), as in DeepLab-LargeFOV (v1 paper, Sec. 4, Table 2).

    ``avg_pool=True`` puts a 3x3 stride-1 average pool (padding counted, as Caffe does) before
    fc6, the ``pool5a`` layer of the released v1 prototxt (recalled, not in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 1024,
        rate_at_os8: int = 12,
        output_stride: int = 8,
        dropout: float = 0.5,
        avg_pool: bool = False,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if avg_pool:
            layers["pool5a"] = nn.AvgPool2d(3, stride=1, padding=1)
        # v1 paper, Table 2 ("DeepLab-LargeFOV"): kernel 3x3, input stride 12, 1024 channels.
        layers["fc6"] = nn.Conv2d(in_channels, channels, 3)
        layers["relu6"] = nn.ReLU(inplace=True)
        layers["drop6"] = nn.Dropout(
            dropout
        )  # 0.5 after fc6 and fc7, as VGG-16 and the v1 prototxt
        layers["fc7"] = nn.Conv2d(channels, channels, 1)
        layers["relu7"] = nn.ReLU(inplace=True)
        layers["drop7"] = nn.Dropout(dropout)
        layers["fc8"] = nn.Conv2d(channels, num_classes, 1)
        super().__init__(layers)
        self.rate_at_os8 = rate_at_os8
        self.out_channels = num_classes
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> None:
        """Set fc6's atrous rate for ``output_stride`` in place (12 at OS8, 6 at OS16)."""
        self.rate = fc6_rate(output_stride, self.rate_at_os8)
        set_dilation(self.fc6, self.rate)
