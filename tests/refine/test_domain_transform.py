"""Domain transform filter, image edges, EdgeNet and the DT-EdgeNet wrapper."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from atrous.models import deeplabv3plus
from atrous.refine import (
    DomainTransform,
    DomainTransformDeepLab,
    EdgeNet,
    domain_transform,
    image_edges,
    with_domain_transform,
)

# With sigma_s = sigma_r = sqrt(2) / ln 2 and one iteration, the feedback weight across a
# transition with edge value d is exactly 2 ** -(1 + d).
HALF = math.sqrt(2.0) / math.log(2.0)


def _reference(x: torch.Tensor, d: torch.Tensor, sigma_s: float, sigma_r: float, k: int):
    """Per-pixel Python transcription of Gastal & Oliveira's recursive filter (one image,
    ``d`` [2,H,W]: horizontal then vertical edge values stored at the later pixel)."""
    y = x.clone()
    _, h, w = y.shape
    for i in range(k):
        sigma = sigma_s * math.sqrt(3) * 2 ** (k - i - 1) / math.sqrt(4**k - 1)
        a = math.exp(-math.sqrt(2) / sigma)
        wh = a ** (1 + sigma_s / sigma_r * d[0])
        wv = a ** (1 + sigma_s / sigma_r * d[1])
        for r in range(h):
            for c in range(1, w):
                y[:, r, c] = y[:, r, c] + wh[r, c] * (y[:, r, c - 1] - y[:, r, c])
            for c in range(w - 2, -1, -1):
                y[:, r, c] = y[:, r, c] + wh[r, c + 1] * (y[:, r, c + 1] - y[:, r, c])
        for c in range(w):
            for r in range(1, h):
                y[:, r, c] = y[:, r, c] + wv[r, c] * (y[:, r - 1, c] - y[:, r, c])
            for r in range(h - 2, -1, -1):
                y[:, r, c] = y[:, r, c] + wv[r + 1, c] * (y[:, r + 1, c] - y[:, r, c])
    return y


def test_hand_computed_row() -> None:
    # x = [0, 4, 8], weights w1 = 1/2 (d = 0), w2 = 1/4 (d = 1); d at pixel 0 is unused.
    # left->right: 0, 0.5*4 + 0.5*0 = 2, 0.75*8 + 0.25*2 = 6.5
    # right->left: 6.5, 0.75*2 + 0.25*6.5 = 3.125, 0.5*0 + 0.5*3.125 = 1.5625
    x = torch.tensor([0.0, 4.0, 8.0], dtype=torch.float64)
    expected = torch.tensor([1.5625, 3.125, 6.5], dtype=torch.float64)
    edges = torch.tensor([100.0, 0.0, 1.0], dtype=torch.float64)
    out = domain_transform(
        x.view(1, 1, 1, 3), edges.view(1, 1, 1, 3), sigma_s=HALF, sigma_r=HALF, iterations=1
    )
    torch.testing.assert_close(out.flatten(), expected)
    # The same column filtered vertically reads channel 1 of a two-channel edge map.
    two = torch.stack([torch.full((3,), 1e3, dtype=torch.float64), edges]).view(1, 2, 3, 1)
    out = domain_transform(x.view(1, 1, 3, 1), two, sigma_s=HALF, sigma_r=HALF, iterations=1)
    torch.testing.assert_close(out.flatten(), expected)


@pytest.mark.parametrize("edge_channels", [1, 2])
def test_matches_per_pixel_reference(edge_channels: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    edges = torch.rand(1, edge_channels, 4, 5, dtype=torch.float64)
    out = domain_transform(x, edges, sigma_s=3.0, sigma_r=0.7, iterations=3)
    ref = _reference(x[0], edges[0].expand(2, 4, 5), 3.0, 0.7, 3)
    torch.testing.assert_close(out[0], ref)


def test_constant_signal_stays_constant() -> None:
    torch.manual_seed(0)
    x = torch.full((2, 3, 9, 11), 0.37)
    edges = torch.rand(2, 2, 9, 11) * torch.tensor([0.0, 5.0, 1e3]).repeat(4)[:11]
    out = domain_transform(x, edges)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_does_not_smooth_across_a_strong_edge() -> None:
    x = torch.zeros(1, 1, 8, 16)
    x[..., 8:] = 1.0
    edges = torch.zeros(1, 1, 8, 16)
    edges[..., 8] = 1e4  # the transition between columns 7 and 8 is stored at column 8
    out = domain_transform(x, edges)
    assert out[..., :8].abs().max() < 1e-4
    assert (out[..., 8:] - 1).abs().max() < 1e-4
    # Without the edge the boundary is smoothed, so the check above is not vacuous.
    flat = domain_transform(x, torch.zeros_like(edges))
    assert flat[..., 7].min() > 0.1 and flat[..., 8].max() < 0.9


def test_smooths_within_a_region() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 32, 32)
    out = domain_transform(x, torch.zeros(1, 1, 32, 32), sigma_s=10.0)
    assert out.var() < x.var() / 50


@pytest.mark.parametrize("edge_channels", [1, 2])
def test_gradcheck_scores_and_edges(edge_channels: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    edges = torch.rand(1, edge_channels, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s, e: domain_transform(s, e, sigma_s=4.0, sigma_r=0.5), (x, edges)
    )


def test_image_edges_hand_computed() -> None:
    image = torch.zeros(1, 3, 2, 3, dtype=torch.uint8)
    image[0, 0] = torch.tensor([[0, 255, 255], [0, 0, 255]])
    image[0, 2, 0, 2] = 51  # 0.2 after /255
    expected = torch.tensor(
        [[[0.0, 1.0, 0.2], [0.0, 0.0, 1.0]], [[0.0, 0.0, 0.0], [0.0, 1.0, 0.2]]]
    ).unsqueeze(0)
    torch.testing.assert_close(image_edges(image), expected)
    torch.testing.assert_close(image_edges(image.float() / 255), expected)


def test_errors_name_the_shapes() -> None:
    scores = torch.zeros(1, 3, 4, 5)
    with pytest.raises(ValueError, match=r"\[1, 3, 4, 5\].*\[1, 3, 4, 5\]"):
        domain_transform(scores, torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match=r"\[1, 1, 4, 6\]"):
        domain_transform(scores, torch.zeros(1, 1, 4, 6))
    with pytest.raises(ValueError, match="nonnegative"):
        domain_transform(scores, -torch.ones(1, 1, 4, 5))


def test_domain_transform_module() -> None:
    dt = DomainTransform(sigma_s=7.0, sigma_r=0.5, iterations=2)
    assert list(dt.parameters()) == [] and "sigma_s=7.0" in repr(dt)
    x, e = torch.randn(1, 2, 6, 7), torch.rand(1, 1, 6, 7)
    torch.testing.assert_close(
        dt(x, e), domain_transform(x, e, sigma_s=7.0, sigma_r=0.5, iterations=2)
    )


def _tiny() -> DomainTransformDeepLab:
    torch.manual_seed(0)
    model = deeplabv3plus(backbone="mobilenetv2", num_classes=3, width_mult=0.25, channels=16)
    return with_domain_transform(model, edge_channels=8)


def test_forward_with_features_matches_forward() -> None:
    model = _tiny().model.eval()
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        # forward pads 33 to 48 (the next multiple of OS16); forward_with_features is the
        # network itself, so it matches on the padded input.
        logits, features = model.forward_with_features(model.pad(x))
        torch.testing.assert_close(model(x), logits[..., :33, :33], rtol=0, atol=0)
    assert set(features) == {"os4", "os8", "out"} and logits.shape == (1, 3, 48, 48)


def test_edgenet_shape_and_range() -> None:
    edgenet = EdgeNet({"os4": 4, "out": 6}, channels=5)
    features = {"os4": torch.randn(2, 4, 17, 17), "out": torch.randn(2, 6, 5, 5)}
    edges = edgenet(features, (65, 65))
    assert edges.shape == (2, 1, 65, 65)
    assert edges.min() >= 0 and edges.max() <= 1


def test_dt_deeplab_shape_backward_and_output_stride() -> None:
    net = _tiny()
    assert all(k.startswith(("model.", "edgenet.")) for k in net.state_dict())
    assert net.num_classes == 3 and net.output_stride == 16
    x = torch.randn(2, 3, 65, 65)
    out = net(x)
    assert out.shape == (2, 3, 65, 65)
    out.square().mean().backward()
    for p in (net.edgenet.fuse.weight, net.model.classifier.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    first = next(net.model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    net.set_output_stride(8)
    assert net.output_stride == 8 and net.model.output_stride == 8


def test_dt_deeplab_trains() -> None:
    net = _tiny().train()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 33, 33)
    target = torch.zeros(2, 33, 33, dtype=torch.long)
    target[:, :, 16:] = 1
    target[:, 20:, :] = 2
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(net(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.gpu
def test_domain_transform_on_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(2, 5, 40, 50, generator=g)
    edges = torch.rand(2, 1, 40, 50, generator=g)
    cpu = domain_transform(scores, edges)
    cuda = domain_transform(scores.cuda(), edges.cuda())
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-5, rtol=1e-5)
