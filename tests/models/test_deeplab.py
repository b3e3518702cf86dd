import pytest
import torch
import torchvision

from atrous.models import MODELS, build_model, deeplabv3plus, mobile_deeplabv3
from atrous.models.backbones._stride import stride_plan
from atrous.models.heads.aspp import rates_past_crop


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _small(**kwargs):
    return deeplabv3plus(num_classes=5, width_mult=0.25, channels=16, **kwargs)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(65, 65), (64, 80), (33, 47)])
def test_logits_at_input_size(output_stride, size):
    model = _small(output_stride=output_stride).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert model(x).shape == (2, 5, *size)
        features = model.backbone(x)
    # Features at OS4 and at the output stride (ceil, as strided 'same' convs give).
    assert features["os4"].shape[-2:] == tuple(-(-s // 4) for s in size)
    assert features["out"].shape[-2:] == tuple(-(-s // output_stride) for s in size)


def test_paper_widths_and_rates():
    model = deeplabv3plus(num_classes=21)
    assert model.backbone.feature_channels == {"os4": 24, "os8": 32, "out": 320}
    assert model.head.rates == (6, 12, 18)
    assert model.decoder.reduce[0].out_channels == 48  # v3+ low-level projection
    assert model.head.out_channels == 256 and model.decoder.out_channels == 256
    assert deeplabv3plus(num_classes=21, output_stride=8).head.rates == (12, 24, 36)
    dropouts = [m.p for m in model.head.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.1]  # the TF reference's keep probability 0.9
    wide = deeplabv3plus(num_classes=21, aspp_dropout=0.5)
    assert [m.p for m in wide.head.modules() if isinstance(m, torch.nn.Dropout)] == [0.5]


def test_stride_plan_turns_strides_into_rates():
    strides = [2, 1, 2, 1, 2, 1, 2, 1, 2, 1]
    assert stride_plan(strides, 32) == [(s, 1) for s in strides]
    assert stride_plan(strides, 8) == [
        (2, 1),
        (1, 1),
        (2, 1),
        (1, 1),
        (2, 1),
        (1, 1),
        (1, 1),
        (1, 2),
        (1, 2),
        (1, 4),
    ]
    with pytest.raises(ValueError, match="output_stride"):
        stride_plan(strides, 4)


def test_torchvision_mobilenet_v2_weights_load_and_agree():
    reference = torchvision.models.mobilenet_v2().eval()
    ours = deeplabv3plus(num_classes=3, output_stride=32).backbone.eval()
    weights = {
        k: v
        for k, v in reference.state_dict().items()
        if k.startswith("features.") and not k.startswith("features.18.")
    }
    ours.load_state_dict(weights, strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x)["out"], reference.features[:18](x), atol=1e-5)
        assert torch.allclose(ours(x)["os4"], reference.features[:4](x), atol=1e-5)


def test_builder_registry_and_errors():
    assert MODELS["deeplabv3plus"] is deeplabv3plus
    assert isinstance(
        build_model("deeplabv3plus", num_classes=4, width_mult=0.25, channels=8), torch.nn.Module
    )
    with pytest.raises(ValueError, match="unknown model"):
        build_model("segformer")
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'"):
        deeplabv3plus(backbone="resnet9")
    with pytest.raises(ValueError, match="output_stride"):
        deeplabv3plus(output_stride=12)
    with pytest.raises(TypeError):
        deeplabv3plus("mobilenetv2")  # keyword-only


def test_custom_atrous_rates_follow_the_output_stride():
    model = _small(atrous_rates=(2, 4, 6))
    assert model.head.rates == (2, 4, 6)
    model.set_output_stride(8)
    assert model.head.rates == (4, 8, 12)
    depthwise = model.head.branches[3][0][0]  # separable branch: depthwise conv first
    assert depthwise.dilation == (12, 12) and depthwise.padding == (12, 12)
    model.set_output_stride(32)
    assert model.head.rates == (1, 2, 3)
    model.set_output_stride(16)
    assert model.head.rates == (2, 4, 6)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_mobile_deeplabv3(output_stride):
    model = mobile_deeplabv3(num_classes=21, output_stride=output_stride)
    assert len(model.head.branches) == 1 and model.decoder is None  # 1x1 + image pooling only
    x = torch.randn(2, 3, 65, 65)
    assert model(x).shape == (2, 21, 65, 65)
    model(x).mean().backward()
    # MobileNetV2 paper, Table 7: 2.11M parameters for the OS16 model without ASPP.
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 2.11


def test_mobilenetv2_low_level_tap_of_the_tf_reference():
    """low_level="depthwise" taps layer_4/depthwise_output (TF reference): the 144-channel
    expanded depthwise output of features[3] after BN + ReLU6; the encoder output is unchanged."""
    tf_tap = deeplabv3plus(num_classes=3, low_level="depthwise").eval()
    block = deeplabv3plus(num_classes=3).eval()
    block.backbone.load_state_dict(tf_tap.backbone.state_dict())
    assert tf_tap.decoder.reduce[0].in_channels == 144
    assert block.decoder.reduce[0].in_channels == 24
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        ours = tf_tap.backbone(x)
        unit = block.backbone.features[3]
        expected = unit.conv[1](unit.conv[0](block.backbone.features[:3](x)))
        torch.testing.assert_close(ours["os4"], expected, rtol=0, atol=0)
        torch.testing.assert_close(ours["out"], block.backbone(x)["out"], rtol=0, atol=0)
        assert tf_tap(x).shape == (1, 3, 65, 65)
    assert ours["os4"].min() >= 0 and ours["os4"].max() <= 6  # after ReLU6
    with pytest.raises(ValueError, match="low_level"):
        deeplabv3plus(backbone="resnet50", low_level="depthwise")


def test_rates_past_the_training_crop_are_named():
    # 96 // 16 = 6: every paper rate reads only padding off its centre, as on the demo's crops.
    (problem,) = rates_past_crop(_small(), 96)
    assert "[6, 12, 18]" in problem and "6x6" in problem and "data.crop_size=96" in problem
    (problem,) = rates_past_crop(_small(), 160)  # 10x10 features: rate 6 fits
    assert "[12, 18]" in problem and "10x10" in problem
    (problem,) = rates_past_crop(_small(output_stride=8), 161)  # 21x21: (12, 24, 36) at OS8
    assert "[24, 36]" in problem and "21x21" in problem
    assert rates_past_crop(_small(), 513) == []
    assert rates_past_crop(_small(atrous_rates=(1, 2, 3)), 96) == []
    assert rates_past_crop(mobile_deeplabv3(num_classes=5, width_mult=0.25), 96) == []


def test_zero_init_residual_starts_every_residual_unit_as_the_identity():
    units = list(_small().backbone.features[1:])  # the default
    residual = [u for u in units if u.use_res_connect]
    assert residual and len(residual) < len(units)
    for unit in residual:
        x = torch.randn(2, unit.conv[0][0].in_channels, 9, 9)
        assert torch.equal(unit(x), x)
    for unit in units:  # units without a skip keep their BN scale
        if not unit.use_res_connect:
            assert unit.conv[-1].weight.abs().min() > 0
    plain = _small(zero_init_residual=False).backbone.features[1:]
    assert all(u.conv[-1].weight.abs().min() > 0 for u in plain)


def test_zero_init_residual_mutes_resnet_bottlenecks():
    from torchvision.models.resnet import Bottleneck

    net = deeplabv3plus(num_classes=5, backbone="resnet50").backbone
    units = [m for m in net.modules() if isinstance(m, Bottleneck)]
    assert len(units) == 16
    for unit in units:
        assert torch.count_nonzero(unit.bn3.weight) == 0
    unit = [u for u in units if u.downsample is None][0]
    x = torch.rand(2, unit.conv1.in_channels, 5, 5)  # post-ReLU features: non-negative
    assert torch.equal(unit(x), x)
    plain = deeplabv3plus(num_classes=5, backbone="resnet50", zero_init_residual=False).backbone
    assert all(
        torch.count_nonzero(m.bn3.weight) > 0 for m in plain.modules() if isinstance(m, Bottleneck)
    )
