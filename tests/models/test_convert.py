import pytest
import torch
import torchvision

from atrous.models import DeepLab, from_torchvision
from atrous.models.backbones.resnet import ResNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_deeplabv3_resnet50_outputs_match():
    reference = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=7, aux_loss=True
    ).eval()
    # Random init leaves BN statistics at 0/1; perturb them so the mapping of every BN shows.
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    model = from_torchvision(reference).eval()
    assert isinstance(model, DeepLab) and model.num_classes == 7
    assert model.output_stride == 8 and model.head.rates == (12, 24, 36)
    assert not any(k.startswith("aux") for k in model.state_dict())
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        assert (model(x) - reference(x)["out"]).abs().max() < 1e-4
        model.set_output_stride(16)
        assert model.head.rates == (6, 12, 18)
        assert model(x).shape == (1, 7, 65, 65)


def test_bare_resnet_carries_its_weights():
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    reference.eval()
    backbone = from_torchvision(reference).eval()
    assert isinstance(backbone, ResNet) and backbone.output_stride == 8
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(reference.children())[:-2])(x)
        assert (backbone(x)["out"] - expected).abs().max() < 1e-4
    assert torch.equal(backbone.conv1.weight, reference.conv1.weight)


def test_unsupported_models_are_named():
    with pytest.raises(ValueError, match="BasicBlock"):
        from_torchvision(torchvision.models.resnet18())
    with pytest.raises(TypeError, match="Linear"):
        from_torchvision(torch.nn.Linear(2, 2))
