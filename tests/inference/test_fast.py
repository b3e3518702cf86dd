"""BatchNorm folding and the ``Predictor(fast=True)`` path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from atrous.inference import fast as fast_mod
from atrous.inference.fast import fold_batchnorm, optimize_for_inference
from atrous.inference.predictor import Predictor
from atrous.models import deeplabv3, deeplabv3plus


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folding is actually exercised."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


MODELS = {
    "v3plus-mobilenetv2": lambda: deeplabv3plus(
        backbone="mobilenetv2", num_classes=5, width_mult=0.25, channels=16
    ),
    "v3-resnet50": lambda: deeplabv3(backbone="resnet50", num_classes=5, channels=16),
    "v3plus-xception41": lambda: deeplabv3plus(backbone="xception41", num_classes=5, channels=16),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_folded_model_matches_original(name: str) -> None:
    model = _randomize_bn(MODELS[name]())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = optimize_for_inference(model)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = model(x)
        got = folded(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert _count_bn(folded) < _count_bn(model)
    # the original keeps its modules, weights and statistics
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert folded is not model


def test_all_bn_folded_in_mobilenetv2() -> None:
    model = _randomize_bn(MODELS["v3plus-mobilenetv2"]())
    n_bn = _count_bn(model)
    assert n_bn > 0
    folded = optimize_for_inference(model)
    assert _count_bn(folded) == 0
    assert _count_bn(model) == n_bn
    assert not folded.training


def test_resnet_units_folded() -> None:
    folded = optimize_for_inference(_randomize_bn(MODELS["v3-resnet50"]()))
    assert _count_bn(folded) == 0


def test_options_and_unmatched_bn() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    out = optimize_for_inference(model, channels_last=False)
    assert isinstance(out[2], nn.BatchNorm2d)  # not directly after a conv: left alone
    assert not out[0].weight.is_contiguous(memory_format=torch.channels_last)
    kept = optimize_for_inference(
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), fold_bn=False
    )
    assert isinstance(kept[1], nn.BatchNorm2d)
    assert kept[0].weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))


def _tiny_predictors(**options) -> tuple[Predictor, Predictor]:
    model = _randomize_bn(MODELS["v3plus-mobilenetv2"]())
    return Predictor(model, **options), Predictor(model, fast=True, **options)


def test_fast_predictor_agrees() -> None:
    plain, fast = _tiny_predictors()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    labels, fast_labels = plain.predict(image), fast.predict(image)
    assert fast_labels.shape == labels.shape == (61, 83)
    assert (labels == fast_labels).float().mean() >= 0.99
    logits = fast.logits(image)
    assert logits.dtype == torch.float32
    proba = fast.predict_proba(image)
    assert proba.dtype == torch.float32 and proba.shape == (5, 61, 83)
    torch.testing.assert_close(proba.sum(0), torch.ones(61, 83), atol=1e-4, rtol=0)
    batch = fast.predict_batch([image, image[:40]])
    assert [b.shape for b in batch] == [(61, 83), (40, 83)]


def test_fast_predictor_with_tta_and_sliding() -> None:
    plain, fast = _tiny_predictors(scales=(0.75, 1.0), flip=True, crop=48, stride=32)
    image = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    assert (plain.predict(image) == fast.predict(image)).float().mean() >= 0.99
    torch.testing.assert_close(
        fast.predict_proba(image).sum(0), torch.ones(70, 90), atol=1e-4, rtol=0
    )


def test_fast_without_bf16_is_fp32_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_mod, "bf16_autocast_supported", lambda device: False)
    import atrous.inference.forward as forward_mod

    monkeypatch.setattr(forward_mod, "bf16_autocast_supported", lambda device: False)
    plain, fast = _tiny_predictors()
    assert not fast._forward.autocast
    image = np.random.default_rng(2).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    torch.testing.assert_close(fast.logits(image), plain.logits(image), atol=1e-4, rtol=1e-4)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_fast_rejects_torchscript() -> None:
    conv = nn.Conv2d(3, 2, 1)
    traced = torch.jit.trace(conv, torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="fast=True"):
        Predictor(traced, fast=True)


def test_compile_option_wraps_the_model():
    model = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    compiled = Predictor(model, compile=True)
    assert isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule)
    assert not isinstance(Predictor(model).model, torch._dynamo.eval_frame.OptimizedModule)


@pytest.mark.slow
def test_compiled_predictor_matches_eager():
    # About a minute of compilation on 2 CPU cores: run with `pytest -m slow`.
    torch.manual_seed(0)
    model = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    expected = Predictor(model).logits(image)
    torch.testing.assert_close(
        Predictor(model, compile=True).logits(image), expected, atol=1e-4, rtol=1e-4
    )
