import pytest
import torch
import torchvision

from atrous.config import ModelConfig
from atrous.models import MODELS, build_model, deeplabv2, deeplabv3, deeplabv3plus
from atrous.models.backbones.resnet import resnet50, resnet101
from atrous.models.heads.aspp import ASPPv2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tv_weights(model):
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _ceil(size, stride):
    return tuple(-(-s // stride) for s in size)


def test_torchvision_resnet50_weights_load_and_agree():
    reference = torchvision.models.resnet50().eval()
    ours = resnet50(output_stride=32).eval()
    ours.load_state_dict(_tv_weights(reference), strict=True)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        stem = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        low = reference.layer1(stem)
        out = reference.layer4(reference.layer3(reference.layer2(low)))
        features = ours(x)
    assert torch.allclose(features["os4"], low, atol=1e-5)
    assert torch.allclose(features["out"], out, atol=1e-5)
    assert ours.feature_channels == {"os4": 256, "os8": 512, "out": 2048}


@pytest.mark.parametrize(
    ("output_stride", "replace"), [(8, [False, True, True]), (16, [False, False, True])]
)
def test_strides_and_rates_match_torchvision_dilation(output_stride, replace):
    reference = torchvision.models.resnet50(replace_stride_with_dilation=replace)
    ours = resnet50(output_stride=output_stride)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        for theirs, mine in zip(getattr(reference, name), getattr(ours, name), strict=True):
            assert mine.conv2.stride == theirs.conv2.stride
            assert mine.conv2.dilation == theirs.conv2.dilation
            assert mine.conv2.padding == theirs.conv2.padding
            if theirs.downsample is not None:
                assert mine.downsample[0].stride == theirs.downsample[0].stride


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_sizes(output_stride):
    net = resnet50(output_stride=output_stride).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 65, 65))
    assert features["os4"].shape == (1, 256, *_ceil((65, 65), 4))
    assert features["out"].shape == (1, 2048, *_ceil((65, 65), output_stride))
    assert net.output_stride == output_stride


@pytest.mark.parametrize(
    ("output_stride", "rates", "first_stride"),
    [(16, (2, 4, 8), 1), (8, (4, 8, 16), 1), (32, (1, 2, 4), 2)],
)
def test_multi_grid_rates_on_block4(output_stride, rates, first_stride):
    # DeepLabv3, Sec. 3.2: Multi_Grid (1, 2, 4) with block4 rate 2 at OS16 -> 2, 4, 8.
    net = resnet50(output_stride=output_stride, multi_grid=(1, 2, 4))
    assert tuple(unit.conv2.dilation[0] for unit in net.layer4) == rates
    assert tuple(unit.conv2.padding[0] for unit in net.layer4) == rates
    assert net.layer4[0].conv2.stride == (first_stride,) * 2
    net.set_output_stride(16)
    assert tuple(unit.conv2.dilation[0] for unit in net.layer4) == (2, 4, 8)


@pytest.mark.parametrize("extra_blocks", [1, 3])
def test_cascaded_extra_blocks(extra_blocks):
    net = resnet50(output_stride=16, extra_blocks=extra_blocks).eval()
    names = [f"layer{5 + i}" for i in range(extra_blocks)]
    assert all(hasattr(net, name) for name in names) and not hasattr(
        net, f"layer{6 + extra_blocks}"
    )
    # Block rates double per added block: 2 (block4), 4, 8, 16; multi-grid (1, 2, 1) in each.
    for block, name in enumerate(["layer4", *names]):
        rate = 2 ** (block + 1)
        units = getattr(net, name)
        assert tuple(u.conv2.dilation[0] for u in units) == (rate, 2 * rate, rate)
        assert all(u.conv2.stride == (1, 1) for u in units)
    with torch.no_grad():
        out = net(torch.randn(1, 3, 33, 33))["out"]
    assert out.shape == (1, 2048, *_ceil((33, 33), 16))


def test_backbone_option_errors():
    with pytest.raises(ValueError, match="extra_blocks"):
        resnet50(extra_blocks=4)
    with pytest.raises(ValueError, match="multi_grid"):
        resnet50(multi_grid=(1, 2))
    with pytest.raises(ValueError, match="does not take multi_grid"):
        deeplabv3(backbone="mobilenetv2", multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="does not take width_mult"):
        deeplabv3(backbone="resnet50", width_mult=0.5)


def test_resnet101_shapes_and_torchvision_names():
    net = resnet101(output_stride=16)
    reference = torchvision.models.resnet101()
    ours = {k: v.shape for k, v in net.state_dict().items()}
    assert ours == {k: v.shape for k, v in _tv_weights(reference).items()}
    model = deeplabv3(num_classes=21).eval()  # ResNet-101 is the default backbone
    assert len(model.backbone.layer3) == 23 and model.head.rates == (6, 12, 18)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 33)).shape == (1, 21, 33, 33)


def test_aspp_v2_sums_branches_and_vgg_variant():
    head = ASPPv2(32, 4).eval()
    x = torch.randn(1, 32, 9, 9)
    with torch.no_grad():
        assert torch.allclose(head(x), sum(branch(x) for branch in head.branches), atol=1e-6)
    vgg = ASPPv2(32, 4, hidden=8, output_stride=16).eval()
    assert vgg.rates == (3, 6, 9, 12)
    fc6 = vgg.branches[3][0]
    assert fc6.dilation == (12, 12) and fc6.padding == (12, 12) and fc6.out_channels == 8
    assert [type(m).__name__ for m in vgg.branches[0]] == [
        "Conv2d", "ReLU", "Dropout", "Conv2d", "ReLU", "Dropout", "Conv2d"
    ]  # fmt: skip
    with torch.no_grad():
        assert vgg(x).shape == (1, 4, 9, 9)


def test_registry_config_and_v3plus_on_resnet():
    assert MODELS["deeplabv3"] is deeplabv3 and MODELS["deeplabv2"] is deeplabv2
    config = ModelConfig(name="deeplabv3", backbone="resnet50", channels=16, atrous_rates=(1, 2, 3))
    model = build_model(config.name, num_classes=3, **config.builder_kwargs())
    assert model.head.rates == (1, 2, 3)
    plus = deeplabv3plus(backbone="resnet50", num_classes=3, channels=16, separable=False).eval()
    assert plus.decoder.reduce[0].in_channels == 256  # layer1 features
    with torch.no_grad():
        assert plus(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)
