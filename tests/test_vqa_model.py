"""ABC-CNN: the configurable convolution against a per-sample loop of F.conv2d, the spatial
softmax, shapes, gradients to every parameter, the output-stride round trip (the battery's
properties that apply to a model of images and questions)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from atrous.models import ABCCNN, MODELS, abc_cnn
from atrous.models.abc_cnn import configurable_conv, spatial_softmax


def _small(**kwargs: object) -> ABCCNN:
    options = {"vocab_size": 12, "num_answers": 5, "width_mult": 0.25, "channels": 8}
    return abc_cnn(**{**options, **kwargs})


def _calibrated(model: ABCCNN) -> ABCCNN:
    """Eval mode with batch-norm statistics from one random batch: a fresh backbone's
    eval-mode features are about zero (running variance 1 over tiny activations)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 48, 48), _questions()[[0, 1, 2, 0]])
    return model.eval()


def _questions() -> torch.Tensor:
    return torch.tensor([[3, 4, 5, 0], [1, 2, 0, 0], [5, 6, 7, 8]])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_configurable_conv_is_a_conv2d_per_sample(k: int) -> None:
    torch.manual_seed(0)
    features = torch.randn(3, 6, 7, 9, dtype=torch.float64)
    kernels = torch.randn(3, 6, k, k, dtype=torch.float64)
    loop = torch.cat(
        [F.conv2d(features[i : i + 1], kernels[i : i + 1], padding=k // 2) for i in range(3)]
    )
    out = configurable_conv(features, kernels)
    assert out.shape == (3, 1, 7, 9)
    torch.testing.assert_close(out, loop, rtol=0, atol=1e-12)
    # and by hand at one pixel, for the centre tap of sample 1
    by_hand = (features[1, :, 3 - k // 2 : 3 + k // 2 + 1, 4 - k // 2 : 4 + k // 2 + 1]
               * kernels[1]).sum()  # fmt: skip
    torch.testing.assert_close(out[1, 0, 3, 4], by_hand)


def test_configurable_conv_refuses_kernels_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="expected"):
        configurable_conv(torch.zeros(2, 4, 5, 5), torch.zeros(2, 3, 3, 3))


def test_spatial_softmax_sums_to_one_and_keeps_the_order() -> None:
    logits = torch.randn(4, 1, 5, 6) * 10
    maps = spatial_softmax(logits)
    assert maps.shape == (4, 5, 6)
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(4))
    assert torch.equal(maps.flatten(1).argmax(1), logits.flatten(1).argmax(1))


def test_builder_registered_and_shapes() -> None:
    assert MODELS["abc_cnn"] is abc_cnn
    torch.manual_seed(0)
    model = _small().eval()
    images = torch.randn(3, 3, 48, 40)
    with torch.no_grad():
        assert model(images, _questions()).shape == (3, 5)
        maps = model.attention_maps(images, _questions())
    assert maps.shape == (3, 6, 5)  # OS8 features of 48 x 40
    torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(3))
    # one image, different questions -> different attention (the kernels come from the
    # question)
    with torch.no_grad():
        maps = _calibrated(model).attention_maps(images[:1].expand(3, -1, -1, -1), _questions())
    assert not torch.allclose(maps[0], maps[1], atol=1e-4)


def test_padding_does_not_change_the_answer() -> None:
    torch.manual_seed(0)
    model = _small().eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        short = model(images, torch.tensor([[3, 4]]))
        padded = model(images, torch.tensor([[3, 4, 0, 0, 0]]))
    torch.testing.assert_close(short, padded)


def test_baseline_has_no_attention() -> None:
    model = _small(use_attention=False)
    assert model(torch.randn(2, 3, 32, 32), _questions()[:2]).shape == (2, 5)
    with pytest.raises(ValueError, match="use_attention=False"):
        model.attention_maps(torch.randn(1, 3, 32, 32), _questions()[:1])


@pytest.mark.parametrize("bad", [{"kernel_size": 2}, {"kernel_activation": "relu"},
                                 {"num_answers": 1}])  # fmt: skip
def test_builder_errors(bad: dict) -> None:
    with pytest.raises(ValueError, match="abc_cnn"):
        _small(**bad)


@pytest.mark.parametrize("use_attention", [True, False])
def test_every_parameter_gets_a_gradient(use_attention: bool) -> None:
    torch.manual_seed(0)
    model = _small(use_attention=use_attention, kernel_activation="sigmoid").train()
    loss = F.cross_entropy(model(torch.randn(3, 3, 33, 47), _questions()), torch.tensor([0, 1, 4]))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    if not use_attention:  # the kernel projection feeds the attention alone
        assert dead == ["gain", "kernels.weight", "kernels.bias"]
    else:
        assert not dead


def test_output_stride_round_trip() -> None:
    torch.manual_seed(0)
    model = _calibrated(_small())
    x, q = torch.randn(1, 3, 33, 47), _questions()[:1]
    with torch.no_grad():
        before = model(x, q)
        model.set_output_stride(16)
        other = model(x, q)
        model.set_output_stride(8)
        after = model(x, q)
    assert model.output_stride == 8
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(other, before)
