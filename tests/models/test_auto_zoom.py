"""HAZN's Auto-Zoom machinery: per-pixel box targets decode back to each instance's box, the
confidence-weighted NMS gives back the instances, zooming with an identity scorer gives back the
image (exactly at zoom 1, to float precision for an affine ramp at other zooms), merges by hand,
and a small scale head fits its targets."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from atrous.models.auto_zoom import (
    ScaleHead,
    decode_boxes,
    instance_boxes,
    propose_regions,
    scale_loss,
    scale_targets,
    zoom_factor,
    zoom_regions,
)

BOXES = torch.tensor([[3.0, 2.0, 15.0, 20.0], [20.0, 5.0, 44.0, 14.0], [30.0, 22.0, 37.0, 29.0]])


def _instances(height: int = 32, width: int = 48) -> torch.Tensor:
    """Three separated instances of irregular shape whose boxes are :data:`BOXES`."""
    ids = torch.zeros(height, width, dtype=torch.long)
    ids[2:20, 3:8] = 1  # an L: upright ...
    ids[15:20, 3:15] = 1  # ... and foot
    ids[5:14, 20:44] = 2
    ids[5, 20] = 0  # a notch in the corner: the box stays
    ids[22:29, 30:37] = 3
    ids[25, 33] = 0  # a hole
    return ids


def test_instance_boxes() -> None:
    ids, boxes = instance_boxes(_instances())
    assert ids.tolist() == [1, 2, 3]
    assert torch.equal(boxes, BOXES)


def test_targets_decode_to_each_instance_box_on_every_pixel() -> None:
    ids = _instances()
    ignore = torch.zeros_like(ids, dtype=torch.bool)
    ignore[0, :] = True
    targets = scale_targets(ids, ignore=ignore)
    assert targets["boxes"].shape == (4, 32, 48)
    decoded = decode_boxes(targets["boxes"]).reshape(32, 48, 4)
    for k, box in enumerate(BOXES, start=1):
        on = ids == k
        torch.testing.assert_close(decoded[on], box.expand(int(on.sum()), 4), atol=1e-4, rtol=0)
    off = ids == 0
    assert (targets["boxes"][:, off] == 0).all()
    assert torch.equal(targets["confidence"], (ids > 0).float())
    assert torch.equal(targets["weight"], ((ids > 0) & ~ignore).float())
    assert torch.equal(targets["valid"], ~ignore)
    # widths and heights over the longer side (48)
    assert targets["boxes"][2:, 3, 5].tolist() == [12 / 48, 18 / 48]


def test_no_instances_give_empty_targets_and_no_regions() -> None:
    targets = scale_targets(torch.zeros(8, 12, dtype=torch.long))
    assert not targets["boxes"].any() and not targets["confidence"].any()
    regions, scores = propose_regions(targets["boxes"], targets["confidence"])
    assert regions.shape == (0, 4) and scores.shape == (0,)


def test_coarse_map_decodes_with_the_image_size() -> None:
    """A 2x average-pooled target map (align_corners=False centres) still decodes to the box
    wherever its 2x2 block lies inside one instance (the encoding is affine in the pixel)."""
    ids = _instances()
    targets = scale_targets(ids)
    coarse = F.avg_pool2d(targets["boxes"][None], 2)[0]
    whole = F.avg_pool2d((ids[None, None] == 2).float(), 2)[0, 0] == 1
    decoded = decode_boxes(coarse, image_size=(32, 48)).reshape(16, 24, 4)
    expected = BOXES[1].expand(int(whole.sum()), 4)
    torch.testing.assert_close(decoded[whole], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("stride", [1, 2])
def test_nms_gives_back_the_instances(stride: int) -> None:
    targets = scale_targets(_instances())
    regions, scores = propose_regions(targets["boxes"], targets["confidence"], stride=stride)
    assert regions.shape == (3, 4) and torch.equal(scores, torch.ones(3))
    order = regions[:, 0].argsort()
    torch.testing.assert_close(regions[order], BOXES, atol=1e-4, rtol=0)


def _encode(box: list[float], x: int, y: int, longer: float) -> torch.Tensor:
    x1, y1, x2, y2 = box
    return torch.tensor(
        [((x1 + x2) / 2 - x - 0.5) / longer, ((y1 + y2) / 2 - y - 0.5) / longer,
         (x2 - x1) / longer, (y2 - y1) / longer]
    )  # fmt: skip


def test_regions_are_confidence_weighted_means() -> None:
    a, b, c = [4.0, 4.0, 20.0, 20.0], [5.0, 6.0, 21.0, 22.0], [40.0, 40.0, 50.0, 60.0]
    boxes, confidence = torch.zeros(4, 64, 64), torch.zeros(64, 64)
    for (x, y), box, conf in zip(
        [(8, 8), (9, 9), (45, 45)], [a, b, c], [0.9, 0.6, 0.7], strict=True
    ):
        boxes[:, y, x], confidence[y, x] = _encode(box, x, y, 64.0), conf
    confidence[30, 30] = 0.4  # below min_confidence: no candidate
    regions, scores = propose_regions(boxes, confidence)
    expected_ab = (0.9 * torch.tensor(a) + 0.6 * torch.tensor(b)) / 1.5
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7]))
    torch.testing.assert_close(regions, torch.stack([expected_ab, torch.tensor(c)]))
    regions, _ = propose_regions(boxes, confidence, max_regions=1)
    assert regions.shape == (1, 4)
    empty, _ = propose_regions(boxes, confidence, min_confidence=0.95)
    assert empty.shape == (0, 4)


def test_a_candidate_joins_only_the_most_confident_keeper_that_suppresses_it() -> None:
    a, b, c = [0.0, 0.0, 10.0, 10.0], [6.0, 0.0, 16.0, 10.0], [3.0, 0.0, 13.0, 10.0]
    boxes, confidence = torch.zeros(4, 32, 32), torch.zeros(32, 32)
    for (x, y), box, conf in zip(
        [(4, 4), (12, 4), (8, 5)], [a, b, c], [0.9, 0.8, 0.6], strict=True
    ):
        boxes[:, y, x], confidence[y, x] = _encode(box, x, y, 32.0), conf
    regions, scores = propose_regions(boxes, confidence)  # IoU(a, b) = 0.25, c: 7/13 with both
    expected_a = (0.9 * torch.tensor(a) + 0.6 * torch.tensor(c)) / 1.5
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.8]))
    torch.testing.assert_close(regions, torch.stack([expected_a, torch.tensor(b)]))


def test_zoom_factor_is_clipped() -> None:
    regions = torch.tensor([[0.0, 0.0, 64.0, 32.0], [0.0, 0.0, 8.0, 10.0], [0, 0, 1000.0, 10]])
    zooms = zoom_factor(regions, target_size=128, min_zoom=0.5, max_zoom=4)
    torch.testing.assert_close(zooms, torch.tensor([2.0, 4.0, 0.5]))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@pytest.mark.parametrize("context", [0.0, 0.25])
def test_zoom_one_on_a_pixel_aligned_region_is_exact(context: float) -> None:
    image = torch.rand(1, 3, 40, 56)
    regions = torch.tensor([[8.0, 4.0, 40.0, 36.0], [30.0, 10.0, 54.0, 26.0]])  # 32, 24 long
    for merge in ("max", "mean"):
        out = zoom_regions(
            image, regions[:1], _identity, target_size=32, context=context, merge=merge, base=image
        )
        assert torch.equal(out, image)
    # the second region alone zooms by 32 / 24: exact outside it
    out = zoom_regions(image, regions[1:], _identity, target_size=32, context=context, base=image)
    inside = torch.zeros(40, 56, dtype=torch.bool)
    inside[10:26, 30:54] = True
    assert torch.equal(out[..., ~inside], image[..., ~inside])


def _ramp(height: int, width: int) -> torch.Tensor:
    """An affine image: bilinear resampling reproduces it wherever it does not clamp at edges."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )  # fmt: skip
    return torch.stack([xs / width, ys / height, 0.3 * xs / width - 0.7 * ys / height + 0.2])[None]


@pytest.mark.parametrize("merge", ["max", "mean"])
@pytest.mark.parametrize("target", [64.0, 17.0, 43.7])  # zooms 2, 0.53, 1.37 on a 32-long box
def test_affine_ramp_survives_any_zoom(merge: str, target: float) -> None:
    image = _ramp(72, 96)
    regions = torch.tensor([[20.0, 12.0, 52.0, 44.0], [60.5, 30.25, 80.0, 50.0]])
    out = zoom_regions(
        image, regions, _identity, target_size=target, min_zoom=0.1, max_zoom=4, merge=merge,
        base=image,
    )  # fmt: skip
    assert out.shape == image.shape
    covered = torch.zeros(72, 96, dtype=torch.bool)
    covered[12:44, 20:52] = True
    covered[30:50, 60:80] = True
    torch.testing.assert_close(out, image, atol=1e-4, rtol=0)  # interior of the windows
    assert torch.equal(out[..., ~covered], image[..., ~covered])  # (c): exact outside


def test_region_at_the_image_border_is_exact_in_its_interior() -> None:
    image = _ramp(40, 40)
    regions = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # the window is clipped at the border
    out = zoom_regions(image, regions, _identity, target_size=40, base=image)
    torch.testing.assert_close(out[..., 2:14, 2:14], image[..., 2:14, 2:14], atol=1e-4, rtol=0)


def _constant_scorer(values: list[float]):
    calls = itertools.count()

    def scorer(x: torch.Tensor) -> torch.Tensor:
        return torch.full((1, 2, *x.shape[-2:]), values[next(calls)])

    return scorer


@pytest.mark.parametrize(
    ("merge", "with_base", "only_a", "only_b", "both", "neither"),
    [
        ("max", True, 1.0, 3.0, 3.0, 0.0),
        ("mean", True, 0.5, 1.5, 4 / 3, 0.0),
        ("max", False, 1.0, 3.0, 3.0, 0.0),
        ("mean", False, 1.0, 3.0, 2.0, 0.0),
    ],
)
def test_merges_by_hand(
    merge: str, with_base: bool, only_a: float, only_b: float, both: float, neither: float
) -> None:
    image = torch.rand(1, 3, 20, 30)
    regions = torch.tensor([[2.0, 2.0, 12.0, 12.0], [8.0, 6.0, 20.0, 16.0]])
    base = torch.zeros(1, 2, 20, 30) if with_base else None
    out = zoom_regions(
        image, regions, _constant_scorer([1.0, 3.0]), target_size=16, merge=merge, base=base
    )
    assert out.shape == (1, 2, 20, 30)
    torch.testing.assert_close(out[0, :, 3, 3], torch.full((2,), only_a))
    torch.testing.assert_close(out[0, :, 14, 18], torch.full((2,), only_b))
    torch.testing.assert_close(out[0, :, 8, 10], torch.full((2,), both))
    torch.testing.assert_close(out[0, :, 18, 25], torch.full((2,), neither))


def test_zoom_regions_rejects_bad_input() -> None:
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="merge"):
        zoom_regions(image, torch.zeros(0, 4), _identity, merge="sum", base=image)
    with pytest.raises(ValueError, match="one image"):
        zoom_regions(image.expand(2, -1, -1, -1), torch.zeros(0, 4), _identity)
    assert torch.equal(zoom_regions(image, torch.zeros(0, 4), _identity, base=image), image)


def test_scale_head_fits_its_targets() -> None:
    torch.manual_seed(0)
    targets = scale_targets(_instances())
    features = torch.randn(1, 8, 16, 24)  # a fixed OS2 feature map
    head = ScaleHead(8, channels=32)
    outputs = head(features)
    assert outputs["boxes"].shape == (1, 4, 16, 24)
    assert outputs["confidence_logits"].shape == (1, 1, 16, 24)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = scale_loss(head(features), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    stacked = {k: v[None] for k, v in targets.items()}
    torch.testing.assert_close(
        scale_loss(head(features), stacked), scale_loss(head(features), targets)
    )
