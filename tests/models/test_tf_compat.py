"""The TF-compatible mode's parts, without TensorFlow: "SAME" padding, slim's BN epsilon, the
ResNet-v1 beta backbone (tests/models/test_convert_tf.py compares them with TF graphs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from atrous.models import deeplabv3, deeplabv3plus
from atrous.models.backbones import MobileNetV2, resnet50_beta
from atrous.models.layers import Conv2dSame, same_padded


def test_same_padding_pads_the_odd_pixel_bottom_right_on_even_sizes() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    same = same_padded(conv)
    assert isinstance(same, Conv2dSame) and same.weight is conv.weight
    even = torch.randn(1, 2, 8, 10)
    # TF: ceil(8 / 2) = 4 outputs need (4 - 1) * 2 + 3 - 8 = 1 pixel of padding: at the bottom.
    expected = F.conv2d(F.pad(even, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(same(even), expected)
    assert not torch.allclose(conv(even), expected)  # torch's symmetric padding differs there
    odd = torch.randn(1, 2, 9, 11)  # odd sizes: 2 pixels, one each side, as torch pads
    torch.testing.assert_close(same(odd), conv(odd))


def test_tf_compat_mobilenet_keeps_its_names_and_takes_slims_epsilon() -> None:
    plain = MobileNetV2(width_mult=0.5, output_stride=32)
    tf = MobileNetV2(width_mult=0.5, output_stride=32, tf_compat=True)
    assert list(plain.state_dict()) == list(tf.state_dict())
    assert {m.eps for m in tf.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
    assert {m.eps for m in plain.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}
    strided = [m for m in tf.modules() if isinstance(m, Conv2dSame) and m.stride == (2, 2)]
    assert len(strided) == 5  # the stem and the four strided depthwise convs at OS32


def test_resnet_beta_strides_sit_on_each_stages_last_unit() -> None:
    net = resnet50_beta(output_stride=16, multi_grid=(1, 2, 4), width_mult=0.25).eval()
    assert [net.layer1[i].conv2.stride for i in range(3)] == [(1, 1), (1, 1), (2, 2)]
    assert [u.conv2.dilation for u in net.layer4] == [(2, 2), (4, 4), (8, 8)]  # rate 2 x grid
    with torch.no_grad():
        features = net(torch.randn(1, 3, 65, 65))
    assert features["os4"].shape[-2:] == (17, 17) and features["os8"].shape[-2:] == (9, 9)
    assert features["out"].shape[-2:] == (5, 5)
    assert features["out"].shape[1] == net.feature_channels["out"] == 512
    # The decoder's tap is block1/unit_2's conv3 + BN output, before the residual sum and ReLU.
    assert features["os4"].min() < 0


def test_tf_compat_is_refused_where_there_is_no_tf_counterpart() -> None:
    with pytest.raises(ValueError, match="'vgg16' has no TF-compatible mode"):
        deeplabv3plus(backbone="vgg16", num_classes=3, tf_compat=True)
    model = deeplabv3(backbone="resnet50_beta", num_classes=3, width_mult=0.25, tf_compat=True)
    assert model(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)
