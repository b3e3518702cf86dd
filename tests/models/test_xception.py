import pytest
import torch

from atrous.models.backbones.xception import (
    XCEPTION_BLOCKS,
    Xception,
    xception41,
    xception65,
    xception71,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_block_tables_follow_the_paper():
    for depth, middle in ((41, 8), (65, 16), (71, 16)):
        blocks = XCEPTION_BLOCKS[depth]
        assert sum(b.skip == "sum" for b in blocks) == middle  # middle flow: 728 x n
        assert blocks[-2].channels == (728, 1024, 1024) and blocks[-2].stride == 2
        assert blocks[-1].channels == (1536, 1536, 2048) and blocks[-1].skip == "none"
        assert [b.stride for b in blocks].count(2) == 4  # stem + 4 strided blocks = OS32
    assert len(XCEPTION_BLOCKS[71]) == len(XCEPTION_BLOCKS[65]) + 2  # extra entry blocks


def test_parameter_count_matches_timm_without_classifier():
    # timm xception65: 39,916,312 parameters, of which 2048 * 1000 + 1000 in the classifier.
    model = xception65()
    assert _count(model) == 39_916_312 - 2_049_000
    assert 37.8e6 < _count(model) < 37.9e6
    assert model.feature_channels == {"os4": 256, "out": 2048}
    assert xception71().feature_channels == {"os4": 256, "out": 2048}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("build", [xception41, xception71])
def test_feature_sizes(build, output_stride):
    model = build(output_stride=output_stride).eval()
    assert model.output_stride == output_stride
    with torch.no_grad():
        features = model(torch.randn(1, 3, 65, 65))
    # Strided 'same' convs give ceil sizes: 65 -> 33 -> 17 at OS4.
    assert features["os4"].shape == (1, 256, 17, 17)
    side = -(-65 // output_stride)
    assert features["out"].shape == (1, 2048, side, side)


def test_strides_become_rates_in_the_exit_flow():
    model = xception41(output_stride=16)
    exit_first, exit_last = model.blocks[-2], model.blocks[-1]
    assert exit_first.convs[2][0][0].stride == (1, 1)
    assert exit_first.shortcut[0].stride == (1, 1)
    assert exit_first.convs[0][0][0].dilation == (1, 1)  # the unit keeps its own rate
    assert exit_last.convs[0][0][0].dilation == (2, 2)
    assert exit_last.convs[0][0][0].padding == (2, 2)
    model.set_output_stride(8)
    assert model.blocks[2].convs[2][0][0].stride == (1, 1)  # 728 entry block
    assert model.blocks[3].convs[0][0][0].dilation == (2, 2)  # middle flow
    assert exit_last.convs[1][0][0].dilation == (4, 4)


def test_errors():
    with pytest.raises(ValueError, match="depth must be one of"):
        Xception(50)
    with pytest.raises(ValueError, match="output_stride"):
        xception41(output_stride=4)
    with pytest.raises(TypeError):
        xception65(16)  # keyword-only
