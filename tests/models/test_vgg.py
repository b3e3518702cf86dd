import pytest
import torch
import torchvision
from torch import nn

from atrous.models.backbones.vgg import VGG16
from atrous.models.deeplab import DeepLab
from atrous.models.heads.largefov import LargeFOV, fc6_rate

CONV5 = (24, 26, 28)  # torchvision vgg16().features indices of conv5_1..3
POOLS = (4, 9, 16, 23, 30)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def backbone():
    return VGG16().eval()


def _v1(num_classes=21, output_stride=8):
    head = LargeFOV(512, num_classes, output_stride=output_stride)
    return DeepLab(VGG16(output_stride=output_stride), head, nn.Identity(), num_classes=num_classes)


def test_torchvision_vgg16_conv_weights_load_strictly(backbone):
    reference = torchvision.models.vgg16()
    weights = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    assert len(weights) == 26  # 13 convs x (weight, bias)
    backbone.load_state_dict(weights, strict=True)
    for i, module in enumerate(reference.features):
        assert type(module) is type(backbone.features[i])
    assert backbone.feature_channels == {"os4": 128, "out": 512}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_sizes(output_stride):
    net = VGG16(output_stride=output_stride).eval()
    assert net.output_stride == output_stride
    with torch.no_grad():
        features = net(torch.randn(2, 3, 65, 65))
    assert features["os4"].shape == (2, 128, 17, 17)  # ceil(65 / 4)
    side = -(-65 // output_stride)
    assert features["out"].shape == (2, 512, side, side)


def test_v1_pooling_and_conv5_dilation(backbone):
    # v1 paper, Sec. 3.1: 3x3 pools; pool4/pool5 skip subsampling; conv5 at rate 2.
    pools = [backbone.features[i] for i in POOLS]
    assert all(p.kernel_size == 3 and p.padding == 1 and p.dilation == 1 for p in pools)
    assert [p.stride for p in pools] == [2, 2, 2, 1, 1]
    for i in CONV5:
        assert backbone.features[i].dilation == (2, 2) and backbone.features[i].padding == (2, 2)
    others = [m for i, m in enumerate(backbone.features) if isinstance(m, nn.Conv2d)][:10]
    assert all(c.dilation == (1, 1) and c.padding == (1, 1) for c in others)

    net16 = VGG16(output_stride=16)
    assert [net16.features[i].stride for i in POOLS] == [2, 2, 2, 2, 1]
    assert all(net16.features[i].dilation == (1, 1) for i in CONV5)


def test_fc6_rate_follows_output_stride():
    assert [fc6_rate(os) for os in (8, 16, 32)] == [12, 6, 3]
    head = LargeFOV(512, 21)
    assert head.fc6.dilation == (12, 12) and head.fc6.padding == (12, 12)
    assert head.fc6.kernel_size == (3, 3) and head.fc6.out_channels == 1024
    assert head.fc7.kernel_size == (1, 1) and head.fc7.out_channels == 1024
    assert head.fc8.out_channels == 21
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    head.set_output_stride(16)
    assert head.rate == 6 and head.fc6.dilation == (6, 6) and head.fc6.padding == (6, 6)
    with pytest.raises(ValueError, match="output_stride"):
        head.set_output_stride(4)


def test_deeplab_v1_parameter_count():
    model = _v1(num_classes=21)
    blocks = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    vgg, c_in = 0, 3
    for block in blocks:
        for c_out in block:
            vgg += 9 * c_in * c_out + c_out
            c_in = c_out
    assert vgg == 14_714_688  # VGG-16 conv layers
    fc6 = 9 * 512 * 1024 + 1024
    fc7 = 1024 * 1024 + 1024
    fc8 = 1024 * 21 + 21
    total = sum(p.numel() for p in model.parameters())
    assert total == vgg + fc6 + fc7 + fc8 == 20_505_429
    assert round(total / 1e6, 1) == 20.5  # v1 paper, Table 2: DeepLab-LargeFOV, 20.5M


def test_pool5a_average_pooling_is_optional():
    head = LargeFOV(8, 3, channels=16, avg_pool=True).eval()
    assert isinstance(head.pool5a, nn.AvgPool2d) and head.pool5a.stride == 1
    assert head(torch.randn(1, 8, 9, 9)).shape == (1, 3, 9, 9)
    assert "pool5a" not in dict(LargeFOV(8, 3, channels=16).named_children())
