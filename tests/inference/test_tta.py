import pytest
import torch
from torch import nn
from torch.nn import functional as F

from atrous.inference import multiscale_probs, tta_log_probs
from atrous.inference.tta import scaled_size


def pixelwise(seed: int = 0) -> nn.Module:
    """1x1 convs: each pixel's logits depend on that pixel only, so the model is flip-equivariant
    and, on a constant image, gives the same answer at every scale."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 5, 1)).eval()


def symmetric_conv() -> nn.Module:
    """A 3x3 conv whose kernels are left-right symmetric: flip-equivariant by construction."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    return conv.eval()


@torch.no_grad()
def test_single_scale_no_flip_is_the_softmax():
    model, x = pixelwise(), torch.randn(2, 3, 11, 13)
    torch.testing.assert_close(multiscale_probs(model, x), model(x).softmax(1))


@torch.no_grad()
@pytest.mark.parametrize("model", [pixelwise(), symmetric_conv()])
def test_flip_of_an_equivariant_model_changes_nothing(model):
    x = torch.randn(2, 3, 12, 15)
    torch.testing.assert_close(multiscale_probs(model, x, flip=True), model(x).softmax(1))


@torch.no_grad()
def test_scales_and_flip_on_a_constant_image_give_the_single_scale_answer():
    model = pixelwise()
    x = torch.randn(2, 3, 1, 1).expand(2, 3, 17, 21).contiguous()
    got = multiscale_probs(model, x, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True)
    assert got.shape == (2, 5, 17, 21)
    torch.testing.assert_close(got, model(x).softmax(1), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_flip_and_scales_average_matches_a_hand_computation():
    torch.manual_seed(2)
    model = nn.Conv2d(3, 4, (3, 5), padding=(1, 2)).eval()  # not flip-equivariant
    x = torch.randn(1, 3, 10, 14)
    flipped = model(x.flip(-1)).softmax(1).flip(-1)
    assert not torch.allclose(flipped, model(x).softmax(1))
    expected = (model(x).softmax(1) + flipped) / 2
    torch.testing.assert_close(multiscale_probs(model, x, flip=True), expected)

    def at(scale):
        xs = F.interpolate(x, size=scaled_size((10, 14), scale), mode="bilinear")
        runs = [model(xs).softmax(1), model(xs.flip(-1)).softmax(1).flip(-1)]
        return [F.interpolate(p, size=(10, 14), mode="bilinear") for p in runs]

    expected = torch.stack(at(0.5) + at(1.5)).mean(0)
    torch.testing.assert_close(multiscale_probs(model, x, (0.5, 1.5), flip=True), expected)


@torch.no_grad()
def test_a_closure_runs_at_each_scale_and_log_probs_are_the_log_of_the_mean():
    torch.manual_seed(3)
    model = nn.Conv2d(3, 4, (3, 5), padding=(1, 2)).eval()  # not flip-equivariant
    x = torch.randn(1, 3, 9, 9)
    calls = []

    def forward(t):
        calls.append(tuple(t.shape[-2:]))
        return model(t) * 2.0  # a closure, not the model: its scores must be the ones used

    probs = multiscale_probs(forward, x, (0.5, 1.0, 2.0), flip=True)
    assert calls == [(4, 4), (4, 4), (9, 9), (9, 9), (18, 18), (18, 18)]  # round(4.5) = 4

    def run(scale, flipped):  # by hand: resize, (flip), softmax, (flip back), resize back
        size = scaled_size((9, 9), scale)
        xs = x if size == (9, 9) else F.interpolate(x, size=size, mode="bilinear")
        xs = xs.flip(-1) if flipped else xs
        p = (model(xs) * 2.0).softmax(1)
        p = p.flip(-1) if flipped else p
        return p if size == (9, 9) else F.interpolate(p, size=(9, 9), mode="bilinear")

    runs = [run(s, f) for s in (0.5, 1.0, 2.0) for f in (False, True)]
    torch.testing.assert_close(probs, torch.stack(runs).mean(0))
    log_probs = tta_log_probs(forward, x, (0.5, 1.0), flip=True)
    expected = torch.stack([run(s, f) for s in (0.5, 1.0) for f in (False, True)]).mean(0)
    torch.testing.assert_close(log_probs, torch.log(expected))


def test_bad_scales():
    with pytest.raises(ValueError, match="scales"):
        multiscale_probs(pixelwise(), torch.randn(1, 3, 4, 4), scales=())
    with pytest.raises(ValueError, match="scales"):
        multiscale_probs(pixelwise(), torch.randn(1, 3, 4, 4), scales=(1.0, 0.0))
