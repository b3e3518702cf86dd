"""Published-weight loading with the downloads replaced by randomly initialised models."""

import dataclasses
from urllib.error import URLError

import pytest
import timm
import torch
import torchvision

import atrous.models.convert.weights as weights
from atrous.models import deeplabv1, deeplabv2, deeplabv3, deeplabv3plus, from_weights
from atrous.models.convert import registry
from atrous.models.convert.timm import convert_timm_state_dict
from atrous.models.convert.torchvision import from_torchvision


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


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101"])
def test_torchvision_coco_is_a_registry_entry(backbone, tmp_path, monkeypatch):
    """torchvision's COCO-trained DeepLabv3 comes from from_weights(NAME), its download replaced
    by a random torchvision model written where the download would go."""
    name = f"deeplabv3_{backbone}.torchvision_coco_voc"
    entry = registry.WEIGHTS[name]
    assert entry.url.startswith("https://download.pytorch.org/models/") and entry.sha256_prefix
    torch.manual_seed(0)
    reference = getattr(torchvision.models.segmentation, f"deeplabv3_{backbone}")(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    ).eval()
    downloads = []

    def download(url, dst, progress=True):
        downloads.append(url)
        torch.save(reference.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setitem(registry.WEIGHTS, name, dataclasses.replace(entry, sha256_prefix=""))
    model = from_weights(name)
    assert downloads == [entry.url]
    # torchvision's network: output stride 8 (where its 66.4 / 67.4 mIoU are measured), its
    # head (ASPP dropout 0.5, an extra 3x3 conv before the classifier), VOC's 21 classes.
    assert model.output_stride == 8 and model.num_classes == 21 and not model.training
    assert model.head.rates == (12, 24, 36) and len(model.classifier) == 2
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        expected = from_torchvision(reference).eval()
        expected.pad_input = True
        torch.testing.assert_close(model(x), expected(x))
    # A checkpoint trained from it rebuilds from the entry's spec without a download.
    rebuilt = entry.spec.without_downloads().build()
    rebuilt.load_state_dict(model.state_dict())
    assert downloads == [entry.url] and rebuilt.output_stride == 8


def test_bad_requests_and_offline(monkeypatch):
    with pytest.raises(ValueError, match="unknown backbone_weights 'jft'"):
        deeplabv3(backbone="resnet50", backbone_weights="jft")

    def offline(name, tag):
        raise URLError("no network")

    monkeypatch.setattr(weights, "_fetch_torchvision", offline)
    with pytest.raises(OSError, match="could not download torchvision weights resnet50"):
        deeplabv3(backbone="resnet50", backbone_weights="imagenet")
