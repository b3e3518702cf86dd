"""One battery over every builder in the registry: shapes, backward, output stride changes."""

import pytest
import torch

from atrous.models import MODELS, build_model

X = torch.randn(2, 3, 65, 65)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_at_input_size_and_backward(name, output_stride):
    model = build_model(name, num_classes=5, output_stride=output_stride).train()
    logits = model(X)
    assert logits.shape == (2, 5, 65, 65)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.num_classes == 5


@pytest.mark.parametrize("name", sorted(MODELS))
def test_set_output_stride_changes_features_not_parameters(name):
    model = build_model(name, num_classes=5, output_stride=16).eval()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    x = X[:1]
    with torch.no_grad():
        size16 = model.backbone(x)["out"].shape[-1]
        model.set_output_stride(8)
        size8 = model.backbone(x)["out"].shape[-1]
        assert model(x).shape[-2:] == (65, 65)
    assert (size16, size8) == (-(-65 // 16), -(-65 // 8))
    assert model.output_stride == 8
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
