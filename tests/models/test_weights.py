"""Published-weight loading with the downloads replaced by randomly initialised models."""

from urllib.error import URLError

import pytest
import timm
import torch
import torchvision

import atrous.models.weights as weights
from atrous.models import deeplabv1, deeplabv3, deeplabv3plus
from atrous.models.convert_timm import convert_timm_state_dict


@pytest.fixture
def fetched(monkeypatch):
    """Serve random torchvision / timm models instead of downloads; record what was asked."""
    calls = []

    def torchvision_fake(name, tag):
        calls.append((name, tag))
        builder = getattr(torchvision.models, name, None) or getattr(
            torchvision.models.segmentation, name
        )
        if name.startswith("deeplabv3"):
            return builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
        return builder(weights=None)

    def timm_fake(name):
        calls.append((name, None))
        return timm.create_model(name.split(".")[0], pretrained=False)

    monkeypatch.setattr(weights, "_fetch_torchvision", torchvision_fake)
    monkeypatch.setattr(weights, "_fetch_timm", timm_fake)
    torch.manual_seed(0)
    return calls


def test_imagenet_resnet_backbone(fetched, monkeypatch):
    served = {}
    original = weights._fetch_torchvision

    def keep(name, tag):
        served["model"] = original(name, tag)
        return served["model"]

    monkeypatch.setattr(weights, "_fetch_torchvision", keep)
    model = deeplabv3(backbone="resnet50", num_classes=3, backbone_weights="imagenet")
    assert fetched == [("resnet50", "IMAGENET1K_V1")]
    reference = served["model"].state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_imagenet_mobilenetv2_and_vgg(fetched):
    deeplabv3plus(num_classes=3, backbone_weights="imagenet")
    deeplabv1(num_classes=3, backbone_weights="imagenet")
    assert fetched == [("mobilenet_v2", "IMAGENET1K_V1"), ("vgg16", "IMAGENET1K_V1")]


def test_imagenet_xception_through_timm(fetched, monkeypatch):
    served = {}
    original = weights._fetch_timm

    def keep(name):
        served["model"] = original(name)
        return served["model"]

    monkeypatch.setattr(weights, "_fetch_timm", keep)
    model = deeplabv3plus(backbone="xception41", num_classes=3, backbone_weights="imagenet")
    assert fetched == [("xception41.tf_in1k", None)]
    expected = convert_timm_state_dict("xception41", served["model"].state_dict())
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_torchvision_coco(fetched):
    model = deeplabv3(backbone="resnet50", weights="torchvision-coco", output_stride=16)
    assert fetched == [("deeplabv3_resnet50", "COCO_WITH_VOC_LABELS_V1")]
    assert model.output_stride == 16 and model.num_classes == 21
    assert model.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 21, 33, 33)
    with pytest.raises(ValueError, match="num_classes=21"):
        deeplabv3(backbone="resnet50", weights="torchvision-coco", num_classes=5)
    with pytest.raises(ValueError, match="unknown weights 'voc'"):
        deeplabv3(backbone="resnet50", weights="voc")


def test_bad_requests_and_offline(monkeypatch):
    with pytest.raises(ValueError, match="unknown backbone_weights 'jft'"):
        deeplabv3(backbone="resnet50", backbone_weights="jft")

    def offline(name, tag):
        raise URLError("no network")

    monkeypatch.setattr(weights, "_fetch_torchvision", offline)
    with pytest.raises(OSError, match="could not download torchvision weights resnet50"):
        deeplabv3(backbone="resnet50", backbone_weights="imagenet")
