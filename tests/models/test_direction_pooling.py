"""MaskLab's direction features: targets from instance masks, and direction pooling of the
ground-truth direction maps inside the ground-truth boxes gives back each of two touching
same-class objects, which the semantic crop alone merges."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from atrous.models.direction_pooling import (
    direction_bin,
    direction_pool,
    direction_targets,
    mask_box,
)


def _touching_objects() -> torch.Tensor:
    """Two same-class objects whose boxes overlap: an L and a block in its corner, touching."""
    a = torch.zeros(40, 48, dtype=torch.bool)
    a[4:36, 4:14] = True  # the L's upright
    a[26:36, 4:40] = True  # its foot
    b = torch.zeros_like(a)
    b[8:26, 14:34] = True  # in the L's corner, touching both arms
    assert not (a & b).any()
    return torch.stack([a, b])


def test_bins_by_hand() -> None:
    # right of the centre, near: angle bin 0, distance bin 0; straight up (v < 0), far: bin 6
    assert direction_bin(torch.tensor(0.1), torch.tensor(0.0)) == 0
    assert direction_bin(torch.tensor(0.0), torch.tensor(-0.9)) == 6 * 4 + 3
    assert direction_bin(torch.tensor(-0.5), torch.tensor(0.01)) == 3 * 4 + 2


def test_targets_label_each_instance_from_its_own_box() -> None:
    masks = _touching_objects()
    targets = direction_targets(masks)
    assert (targets[~masks.any(0)] == 255).all()
    assert targets[masks.any(0)].max() < 32
    # the block's top-left pixel is up-left of its centre (224.8 degrees), far out: 4 * 4 + 3
    assert targets[8, 14] == 4 * 4 + 3


def _bands() -> torch.Tensor:
    """Two parallel diagonal bands, touching, whose boxes overlap almost entirely."""
    ys, xs = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    a = ((xs - ys).abs() <= 4) & (xs >= 2) & (xs < 40)
    b = ((xs - ys - 9).abs() <= 4) & (xs >= 8) & (xs < 46) & ~a
    return torch.stack([a, b])


@pytest.mark.parametrize("objects", [_touching_objects, _bands])
def test_direction_pooling_of_the_truth_separates_touching_instances(objects) -> None:
    """Inside each ground-truth box the semantic crop holds the other object's pixels too;
    pooling the ground-truth direction maps keeps every pixel of the box's own object and drops
    most of the other's (not all: a pixel of the other object can lie in the same bin relative
    to both centres; 8 x 4 bins leave 8-22% of them here)."""
    masks = objects()
    one_hot = F.one_hot(direction_targets(masks).clamp(max=32), 33)[..., :32]
    directions = one_hot.permute(2, 0, 1)[None].float()  # [1, 32, H, W]
    semantic = masks.any(0)
    merged_in = 0
    for mask in masks:
        box = mask_box(mask)
        x1, y1, x2, y2 = (int(c) for c in box.tolist())
        size = (y2 - y1, x2 - x1)  # one cell per pixel
        rois = torch.cat([torch.zeros(1), box])[None]
        pooled = direction_pool(directions, rois, size, sampling_ratio=1)[0, 0] > 0.5
        own, merged = mask[y1:y2, x1:x2], semantic[y1:y2, x1:x2]
        intruders = merged & ~own
        merged_in += int(intruders.sum())
        assert (pooled & own).sum() == own.sum()  # every own pixel reads its own bin
        assert (pooled & intruders).sum() <= 0.25 * intruders.sum()
    assert merged_in > 100  # the semantic crops merge the two objects


def test_direction_pool_says_what_it_expects() -> None:
    with pytest.raises(ValueError, match=r"\[N, 32, H, W\]"):
        direction_pool(torch.zeros(1, 8, 10, 10), torch.tensor([[0, 0, 0, 5, 5.0]]), (4, 4))
