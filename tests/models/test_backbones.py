"""Every backbone declares what it returns: feature_info (timm-style name, stride, channels)
agrees with the features' shapes, at every output stride."""

from __future__ import annotations

import pytest
import torch

from atrous.models import BACKBONES
from atrous.models.backbones import Backbone, MobileNetV2

SIZE = 64


def _small(name: str, output_stride: int) -> Backbone:
    options = {"width_mult": 0.25} if name.startswith(("mobilenetv2", "xception")) else {}
    return BACKBONES[name](output_stride=output_stride, **options)


@pytest.mark.parametrize("name", BACKBONES)
def test_feature_info_matches_the_returned_features(name):
    torch.manual_seed(0)
    backbone = _small(name, 32).eval()
    assert isinstance(backbone, Backbone)
    for output_stride in (32, 8):
        backbone.set_output_stride(output_stride)
        with torch.no_grad():
            features = backbone(torch.randn(1, 3, SIZE, SIZE))
        info = backbone.feature_info
        assert [i["name"] for i in info] == list(features) == list(backbone.feature_channels)
        assert info[0]["name"] == "os4" and info[-1] == {
            "name": "out",
            "stride": output_stride,
            "channels": backbone.feature_channels["out"],
        }
        for entry in info:
            shape = tuple(features[entry["name"]].shape)
            side = SIZE // entry["stride"]
            assert shape == (1, entry["channels"], side, side), (output_stride, entry)


def test_the_tf_low_level_tap_is_declared_too():
    backbone = MobileNetV2(output_stride=16, width_mult=0.25, low_level="depthwise").eval()
    with torch.no_grad():
        low = backbone(torch.randn(1, 3, SIZE, SIZE))["os4"]
    assert backbone.feature_info[0] == {"name": "os4", "stride": 4, "channels": low.shape[1]}
