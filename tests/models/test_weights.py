"""Published-weight loading with the downloads replaced by randomly initialised models."""

from urllib.error import URLError

import pytest
import timm
import torch
import torchvision

import atrous.models.weights as weights
from atrous.models import deeplabv1, deeplabv2, deeplabv3, deeplabv3plus
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


def test_vgg_fc6_fc7_start_from_imagenet_decimated(fetched, monkeypatch):
    """v1 LargeFOV and v2-VGG: fc6 is VGG-16's fc6 (4096 x 512 x 7 x 7) at every 4th filter and
    taps 0, 3, 6 of the 7 x 7; fc7 every 4th row and column of VGG-16's fc7 (one download)."""
    served = {}
    original = weights._fetch_torchvision

    def keep(name, tag):
        served["model"] = original(name, tag)
        return served["model"]

    monkeypatch.setattr(weights, "_fetch_torchvision", keep)
    model = deeplabv1(num_classes=3, backbone_weights="imagenet")
    vgg = served["model"]
    fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
    w6 = fc6.weight.view(4096, 512, 7, 7)
    assert torch.equal(model.head.fc6.weight[5, 7], w6[20, 7][[0, 3, 6]][:, [0, 3, 6]])
    assert torch.equal(model.head.fc6.bias, fc6.bias[::4])
    assert torch.equal(model.head.fc7.weight[9, 11, 0, 0], fc7.weight[36, 44])
    assert torch.equal(model.head.fc7.bias, fc7.bias[::4])
    v2 = deeplabv2(backbone="vgg16", num_classes=3, backbone_weights="imagenet")
    expected = weights.decimated_vgg_fc(served["model"])  # the second (fake) download
    assert torch.equal(expected["fc6.weight"][3], served["model"].classifier[0].weight.view(
        4096, 512, 7, 7)[12, :, ::3, ::3])  # fmt: skip
    for branch in v2.head.branches:
        assert torch.equal(branch[0].weight, expected["fc6.weight"])
        assert torch.equal(branch[3].weight, expected["fc7.weight"])
    assert [name for name, _ in fetched] == ["vgg16", "vgg16"]  # one download per model


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
    # torchvision's network: output stride 8 (where its 66.4 / 67.4 mIoU are measured) ...
    model = deeplabv3(backbone="resnet50", weights="torchvision-coco")
    assert fetched == [("deeplabv3_resnet50", "COCO_WITH_VOC_LABELS_V1")]
    assert model.output_stride == 8 and model.num_classes == 21
    assert model.head.rates == (12, 24, 36) and len(model.classifier) == 2  # its extra 3x3 conv
    assert model.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 21, 33, 33)
    # ... unless the user sets output_stride.
    assert (
        deeplabv3(backbone="resnet50", weights="torchvision-coco", output_stride=16).output_stride
        == 16
    )
    with pytest.raises(ValueError, match="num_classes=21"):
        deeplabv3(backbone="resnet50", weights="torchvision-coco", num_classes=5)
    with pytest.raises(ValueError, match="unknown weights 'voc'"):
        deeplabv3(backbone="resnet50", weights="voc")
    for option in ({"multi_grid": (1, 2, 4)}, {"extra_blocks": 1}, {"channels": 128},
                   {"atrous_rates": (3, 6, 9)}, {"backbone_weights": "imagenet"}):  # fmt: skip
        with pytest.raises(ValueError, match=f"{next(iter(option))} cannot be changed"):
            deeplabv3(backbone="resnet50", weights="torchvision-coco", **option)


def test_a_checkpoint_from_torchvision_coco_rebuilds_without_download(fetched):
    from atrous.models.spec import ModelSpec

    spec = ModelSpec("deeplabv3", {"backbone": "resnet50", "weights": "torchvision-coco"})
    trained = spec.build()
    assert len(fetched) == 1
    rebuilt = spec.without_downloads().build()
    assert len(fetched) == 1  # the same network, no second download
    rebuilt.load_state_dict(trained.state_dict())
    assert rebuilt.output_stride == 8


def test_bad_requests_and_offline(monkeypatch):
    with pytest.raises(ValueError, match="unknown backbone_weights 'jft'"):
        deeplabv3(backbone="resnet50", backbone_weights="jft")

    def offline(name, tag):
        raise URLError("no network")

    monkeypatch.setattr(weights, "_fetch_torchvision", offline)
    with pytest.raises(OSError, match="could not download torchvision weights resnet50"):
        deeplabv3(backbone="resnet50", backbone_weights="imagenet")
