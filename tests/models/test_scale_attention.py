"""Attention to scale and v2's multi-scale input fusion (MSC): the merges' exact semantics, the
attention weights, the training outputs and the extra-supervision loss."""

from __future__ import annotations

import pytest
import torch

from atrous.models import deeplabv3plus, with_scale_attention
from atrous.models.wrappers.scale_attention import scale_key
from atrous.tasks.losses import pixel_loss, segmentation_loss


def _model(merge: str, scales=(1.0, 0.75, 0.5)):
    torch.manual_seed(0)
    base = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    return with_scale_attention(base, scales=scales, merge=merge, attention_channels=8)


@pytest.mark.parametrize("merge", ["max", "avg"])
def test_max_and_avg_are_the_elementwise_max_and_mean_at_the_common_size(merge):
    model = _model(merge).eval()
    x = model.model.pad(torch.randn(2, 3, 61, 75))
    with torch.no_grad():
        merged, logits, weights = model._merged(x)
        # Each scale's own forward, resized to the scale-1 logits' size by hand.
        h, w = x.shape[-2:]
        reference = []
        for scale in model.scales:
            size = (-(-round(h * scale) // 16) * 16, -(-round(w * scale) // 16) * 16)
            xs = x if scale == 1 else torch.nn.functional.interpolate(x, size=size, mode="bilinear")
            logit = model.model.forward_head(xs)[0]
            reference.append(
                torch.nn.functional.interpolate(logit, size=logits[0].shape[-2:], mode="bilinear")
            )
    stacked = torch.stack(reference, 1)
    expected = stacked.max(1).values if merge == "max" else stacked.mean(1)
    assert weights is None and merged.shape == (2, 4, *logits[0].shape[-2:])
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5)


def test_attention_weights_sum_to_one_and_learn():
    model = _model("attention").train()
    x = torch.randn(2, 3, 64, 80)
    maps = model.attention_maps(x)
    assert maps.shape == (2, 3, 64, 80)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 64, 80))
    assert (maps >= 0).all() and maps.std() > 0
    out = model(x)
    target = torch.randint(0, 4, (2, 64, 80))
    pixel_loss(out["out"], target).backward()
    head = [p.grad for p in model.attention.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head)  # differentiable weights


def test_training_outputs_every_scale_and_eval_the_merge():
    model = _model("attention")
    x = torch.randn(2, 3, 57, 70)
    out = model.train()(x)
    assert list(out) == ["out", scale_key(1.0), scale_key(0.75), scale_key(0.5)]
    assert list(out)[1:] == ["scale_1.00", "scale_0.75", "scale_0.50"]
    assert all(v.shape == (2, 4, 57, 70) for v in out.values())
    with torch.no_grad():
        merged = model.eval()(x)
    assert isinstance(merged, torch.Tensor) and merged.shape == (2, 4, 57, 70)


def test_extra_supervision_and_aux_weight_zero():
    model = _model("max").train()
    x, target = torch.randn(2, 3, 48, 48), torch.randint(0, 4, (2, 48, 48))
    out = model(x)
    alone = pixel_loss(out["out"], target)
    torch.testing.assert_close(segmentation_loss(out, target, aux_weight=0.0), alone)
    per_scale = sum(pixel_loss(out[scale_key(s)], target) for s in model.scales)
    torch.testing.assert_close(
        segmentation_loss(out, target, aux_weight=0.5), alone + 0.5 * per_scale
    )


def test_two_scales_and_errors():
    model = _model("avg", scales=(1.0, 0.5)).eval()
    assert model.attention_maps(torch.randn(1, 3, 40, 40)).shape == (1, 2, 40, 40)
    torch.testing.assert_close(
        model.attention_maps(torch.randn(1, 3, 40, 40)), torch.full((1, 2, 40, 40), 0.5)
    )
    with pytest.raises(ValueError, match="merge must be one of"):
        _model("sum")
    with pytest.raises(ValueError, match="distinct positive"):
        _model("max", scales=(1.0, 1.0))
    with pytest.raises(TypeError, match="wraps a DeepLab"):
        with_scale_attention(torch.nn.Conv2d(3, 4, 1))
