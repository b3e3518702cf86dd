"""The "Decoders matter" pieces: bilinear additive upsampling against a hand-written reference,
and the upsampling stages of every decoder (the model battery covers them as models too)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from atrous.models import BilinearAdditiveUpsample, deeplabv3plus
from atrous.models.heads.decoders import DECODERS, UpsamplingStage


def _reference(x: torch.Tensor, factor: int, group: int) -> torch.Tensor:
    """Loop over output channels: channel o is the sum of upsampled channels o*group + i."""
    up = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    out = torch.zeros(x.shape[0], x.shape[1] // group, *up.shape[-2:], dtype=x.dtype)
    for o in range(out.shape[1]):
        for i in range(group):
            out[:, o] += up[:, o * group + i]
    return out


@pytest.mark.parametrize(("factor", "group"), [(2, 4), (2, 2), (4, 4), (2, 1)])
def test_bilinear_additive_upsample_matches_a_hand_written_reference(factor, group):
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    got = BilinearAdditiveUpsample(factor, group)(x)
    assert got.shape == (2, 8 // group, 5 * factor, 7 * factor)
    torch.testing.assert_close(got, _reference(x, factor, group), rtol=0, atol=1e-12)


def test_bilinear_additive_upsample_by_hand():
    # A constant map stays constant under bilinear upsampling: group sums are exact numbers.
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    out = BilinearAdditiveUpsample(2, 2)(x)
    assert out.shape == (1, 2, 4, 4)
    assert torch.equal(out[0, 0], torch.full((4, 4), 0.0 + 1.0))
    assert torch.equal(out[0, 1], torch.full((4, 4), 2.0 + 3.0))
    with pytest.raises(ValueError, match="groups of 4"):
        BilinearAdditiveUpsample(2, 4)(torch.zeros(1, 6, 2, 2))


@pytest.mark.parametrize("kind", DECODERS[1:])
@pytest.mark.parametrize("residual", [False, True])
def test_stages_double_the_resolution_at_constant_width(kind, residual):
    stage = UpsamplingStage(kind, 16, residual=residual).eval()
    x = torch.randn(2, 16, 6, 9)
    with torch.no_grad():
        y = stage(x)
    assert y.shape == (2, 16, 12, 18)
    if residual:  # the residual is the parameter-free upsampled input
        plain = UpsamplingStage(kind, 16, residual=False).eval()
        plain.load_state_dict(stage.state_dict())
        with torch.no_grad():
            skip = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            torch.testing.assert_close(y, plain(x) + skip)


def test_decoder_options_of_the_builder():
    model = deeplabv3plus(num_classes=3, decoder="transposed", decoder_residual=True)
    assert len(model.decoder.stages) == 2  # OS16 -> OS4: two x2 stages
    assert (
        len(deeplabv3plus(num_classes=3, output_stride=8, decoder="transposed").decoder.stages) == 1
    )
    assert len(deeplabv3plus(num_classes=3).decoder.stages) == 0  # the v3+ paper: bilinear
    with pytest.raises(ValueError, match="unknown decoder"):
        deeplabv3plus(num_classes=3, decoder="fancy")
    with pytest.raises(ValueError, match="needs a learned decoder"):
        deeplabv3plus(num_classes=3, decoder_residual=True)
