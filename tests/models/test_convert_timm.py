import pytest
import timm
import torch

from atrous.models.backbones import MobileNetV2
from atrous.models.backbones.xception import Xception
from atrous.models.convert.timm import convert_timm_state_dict, from_timm


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _timm(name, **kwargs):
    """A random timm model in eval mode with non-trivial BN statistics and affine terms, so a
    misplaced BN tensor would show in the features."""
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _stride4_tap(reference, block_index, x):
    """timm's output of the second separable conv (BN, before the ReLU) of ``block_index``."""
    taps = []
    conv2 = reference.blocks[block_index].stack.conv2
    # Clone: timm's next ReLU is in place and would overwrite the hooked tensor.
    handle = conv2.register_forward_hook(lambda m, i, o: taps.append(o.clone()))
    features = reference.forward_features(x)
    handle.remove()
    return features, taps[0]


@pytest.mark.parametrize(("name", "tap_block"), [("xception65", 1), ("xception71", 2)])
def test_xception_matches_timm_exactly(name, tap_block):
    reference = _timm(name)
    ours = from_timm(reference, output_stride=32).eval()
    assert isinstance(ours, Xception) and ours.low_level_index == tap_block
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected, expected_low = _stride4_tap(reference, tap_block, x)
        features = ours(x)
    assert features["out"].shape == expected.shape == (1, 2048, 3, 3)
    assert features["os4"].shape == expected_low.shape == (1, 256, 17, 17)
    assert (features["out"] - expected).abs().max() < 1e-4
    assert (features["os4"] - expected_low).abs().max() < 1e-4


@pytest.mark.parametrize("output_stride", [8, 16])
def test_xception_dilation_matches_timm(output_stride):
    reference = _timm("xception41", output_stride=output_stride)
    ours = from_timm(reference, output_stride=output_stride).eval()
    x = torch.randn(1, 3, 49, 49)
    with torch.no_grad():
        expected, expected_low = _stride4_tap(reference, 1, x)
        features = ours(x)
    assert features["out"].shape[-1] == -(-49 // output_stride)
    assert (features["out"] - expected).abs().max() < 1e-4
    assert (features["os4"] - expected_low).abs().max() < 1e-4


def test_mobilenetv2_matches_timm_before_conv_head():
    reference = _timm("mobilenetv2_100")
    ours = from_timm(reference, output_stride=32).eval()
    assert isinstance(ours, MobileNetV2)
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        stem = reference.bn1(reference.conv_stem(x))
        low = reference.blocks[:2](stem)  # 16- and 24-channel stages: stride 4
        expected = reference.blocks[2:](low)
        features = ours(x)
    assert features["out"].shape == expected.shape == (2, 320, 3, 3)
    assert features["os4"].shape == low.shape == (2, 24, 17, 17)
    assert (features["out"] - expected).abs().max() < 1e-4
    assert (features["os4"] - low).abs().max() < 1e-4
    # The converted backbone keeps set_output_stride.
    ours.set_output_stride(8)
    with torch.no_grad():
        assert ours(x)["out"].shape == (2, 320, 9, 9)


def test_conversion_covers_every_key_and_drops_only_the_head():
    state = _timm("mobilenetv2_100").state_dict()
    converted = convert_timm_state_dict("mobilenetv2_100", state)
    assert set(converted) == set(MobileNetV2().state_dict())
    head = [k for k in state if k.startswith(("conv_head.", "bn2.", "classifier."))]
    assert len(head) == 1 + 5 + 2 and len(converted) == len(state) - len(head)


def test_unsupported_architectures_are_named():
    with pytest.raises(ValueError, match="'resnet18'.*supported: xception41"):
        from_timm(timm.create_model("resnet18", pretrained=False))
    with pytest.raises(ValueError, match="no atrous name for state-dict key 'blocks.0.extra.w'"):
        convert_timm_state_dict("xception65", {"blocks.0.extra.w": torch.zeros(1)})
    with pytest.raises(ValueError, match="pretrained_cfg"):
        from_timm(torch.nn.Conv2d(1, 1, 1))
