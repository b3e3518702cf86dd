"""DepthwiseConv2d: strided / atrous / non-3x3 depthwise convs train in fp32 under CPU bf16
autocast (their oneDNN bf16 backward is the slow one); everything else is plain nn.Conv2d."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from atrous.models import auto_deeplab, deeplabv3plus, panoptic_deeplab
from atrous.models.layers import (
    Conv2dSame,
    DepthwiseConv2d,
    fast_depthwise,
    fp32_depthwise_under_cpu_autocast,
    same_padded,
    set_dilation,
)


def _depthwise(stride: int = 1, dilation: int = 1, kernel: int = 3) -> nn.Conv2d:
    torch.manual_seed(0)
    pad = (kernel - 1) // 2 * dilation
    conv = nn.Conv2d(8, 8, kernel, stride=stride, padding=pad, dilation=dilation, groups=8)
    return fast_depthwise(nn.Sequential(conv))[0]


@pytest.mark.parametrize(
    ("stride", "dilation", "kernel", "fp32"),
    [(1, 1, 3, False), (2, 1, 3, True), (1, 2, 3, True), (1, 1, 5, True)],
)
def test_which_depthwise_convs_keep_fp32(stride, dilation, kernel, fp32):
    conv = _depthwise(stride, dilation, kernel)
    assert type(conv) is DepthwiseConv2d
    assert fp32_depthwise_under_cpu_autocast(conv) is fp32
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == (torch.float32 if fp32 else torch.bfloat16)
    if fp32:  # exactly the fp32 conv, and its gradient reaches the input
        torch.testing.assert_close(
            y,
            F.conv2d(
                x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
            ),
        )
        y.sum().backward()
        assert x.grad is not None and conv.weight.grad is not None


def test_forward_without_gradients_stays_bf16():
    conv = _depthwise(stride=2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 8, 9, 9)).dtype == torch.bfloat16


def test_the_check_follows_set_dilation():
    conv = _depthwise()
    x = torch.randn(1, 8, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
        set_dilation(conv, 2)
        assert conv(x).dtype == torch.float32


def test_outside_autocast_it_is_nn_conv2d():
    conv = _depthwise(stride=2)
    x = torch.randn(2, 8, 9, 9)
    plain = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
    plain.load_state_dict(conv.state_dict())
    assert torch.equal(conv(x), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a dense conv stays on bf16 autocast
        assert fast_depthwise(nn.Sequential(nn.Conv2d(8, 4, 3)))[0](x).dtype == torch.bfloat16


def test_same_padded_depthwise_keeps_fp32_too():
    conv = same_padded(_depthwise(stride=2))
    assert isinstance(conv, Conv2dSame)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 8, 10, 10, requires_grad=True)).dtype == torch.float32


def test_deeplab_models_carry_it_with_the_same_state_dict():
    torch.manual_seed(0)
    model = deeplabv3plus(backbone="mobilenetv2", num_classes=3, width_mult=0.25)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(type(m) is DepthwiseConv2d for m in depthwise)
    names = set(model.state_dict())
    assert "backbone.features.2.conv.1.0.weight" in names  # torchvision's names, unchanged


BUILT = {
    "deeplabv3plus-mobilenetv2": lambda: deeplabv3plus(width_mult=0.25, channels=16),
    "deeplabv3plus-xception65": lambda: deeplabv3plus(backbone="xception65", channels=16),
    "deeplabv3plus-dpc": lambda: deeplabv3plus(width_mult=0.25, channels=16, head="dpc"),
    "panoptic_deeplab": lambda: panoptic_deeplab(backbone="mobilenetv2", width_mult=0.25),
    "panoptic_deeplab-deeperlab": lambda: panoptic_deeplab(
        backbone="mobilenetv2", width_mult=0.25, decoder="deeperlab"
    ),
    "auto_deeplab": lambda: auto_deeplab(filters=4, channels=16),
}


@pytest.mark.parametrize("name", BUILT)
def test_every_depthwise_conv_is_built_as_one(name):
    """The blocks construct DepthwiseConv2d where they make a depthwise conv: no model swaps
    classes after the build (so a module built alone behaves as inside a model)."""
    model = BUILT[name]()
    depthwise = [
        (key, m)
        for key, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    ]
    assert depthwise
    wrong = [key for key, m in depthwise if not isinstance(m, DepthwiseConv2d)]
    assert wrong == []


@pytest.mark.parametrize(("size", "dilation"), [(5, 6), (6, 6), (7, 6), (10, 12), (3, 2)])
def test_a_rate_past_the_features_is_the_centre_tap_exactly(size, dilation):
    conv = _depthwise(dilation=dilation)
    plain = nn.Conv2d(8, 8, 3, padding=dilation, dilation=dilation, groups=8)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 8, size, size + 1, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y, ref = conv(x), plain(x2)
    torch.testing.assert_close(y, ref)
    y.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad)


def test_a_traced_model_keeps_the_full_conv_for_other_sizes():
    conv = _depthwise(dilation=6)
    traced = torch.jit.trace(conv, torch.randn(1, 8, 5, 5))  # centre tap only at this size
    x = torch.randn(1, 8, 13, 13)
    torch.testing.assert_close(traced(x), conv(x))


def test_same_padded_rate_past_the_features():
    conv = same_padded(_depthwise(dilation=4))
    x = torch.randn(1, 8, 4, 3)
    ref = F.conv2d(x, conv.weight, conv.bias, 1, 4, 4, 8)
    torch.testing.assert_close(conv(x), ref)
