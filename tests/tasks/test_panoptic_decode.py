"""Panoptic post-processing by hand: centre NMS, top-k (ties dropped), grouping (ties to the lower
id), the majority vote and per-class numbering, the stuff area, and the batched form."""

from __future__ import annotations

import pytest
import torch

from atrous.tasks.panoptic_decode import (
    find_instance_centers,
    group_pixels,
    merge_semantic_and_instance,
    panoptic_from_outputs,
)


def test_centers_threshold_and_nms():
    heat = torch.zeros(9, 9)
    heat[2, 2], heat[2, 3] = 0.9, 0.8  # neighbours: NMS keeps the larger
    heat[7, 7] = 0.5
    heat[0, 8] = 0.05  # below the threshold
    centers = find_instance_centers(heat, threshold=0.1, nms_kernel=3)
    assert centers.tolist() == [[2, 2], [7, 7]]  # (y, x), row-major
    # a kernel of 1 keeps every local value above the threshold
    assert find_instance_centers(heat, threshold=0.1, nms_kernel=1).tolist() == [
        [2, 2],
        [2, 3],
        [7, 7],
    ]
    with pytest.raises(ValueError, match="odd"):
        find_instance_centers(heat, nms_kernel=4)


def test_top_k_keeps_scores_strictly_above_the_kth():
    heat = torch.zeros(1, 9)
    heat[0, 0], heat[0, 2], heat[0, 4], heat[0, 6] = 0.9, 0.8, 0.7, 0.3
    everything = [[0, 0], [0, 2], [0, 4], [0, 6]]
    assert find_instance_centers(heat, nms_kernel=1, top_k=4).tolist() == everything
    # more than top_k 3: only scores strictly above the 3rd largest (0.7) remain
    assert find_instance_centers(heat, nms_kernel=1, top_k=3).tolist() == [[0, 0], [0, 2]]
    heat[0, 2] = 0.7  # a tie at the 2nd place: both go
    assert find_instance_centers(heat, nms_kernel=1, top_k=2).tolist() == [[0, 0]]


def test_grouping_to_the_nearest_centre_with_ties_to_the_lower_id():
    centers = torch.tensor([[0, 0], [0, 4]])
    offsets = torch.zeros(2, 1, 5)
    # pixel x points at itself: x = 0, 1 -> centre 1; x = 2 is equidistant -> centre 1 (lower)
    ids = group_pixels(centers, offsets)
    assert ids.tolist() == [[1, 1, 1, 2, 2]]
    # offsets move every pixel onto the second centre
    offsets[1] = 4 - torch.arange(5.0)
    assert group_pixels(centers, offsets).tolist() == [[2, 2, 2, 2, 2]]
    mask = torch.tensor([[True, False, True, False, True]])
    assert group_pixels(centers, offsets, mask).tolist() == [[2, 0, 2, 0, 2]]
    assert group_pixels(centers[:0], offsets).tolist() == [[0, 0, 0, 0, 0]]
    # chunking does not change the answer
    offsets = torch.randn(2, 7, 9) * 3
    centers = torch.tensor([[1, 1], [5, 7], [3, 3]])
    assert torch.equal(group_pixels(centers, offsets, chunk=5), group_pixels(centers, offsets))


def test_merge_majority_vote_numbering_and_stuff_area():
    semantic = torch.tensor([
        [1, 1, 2, 2, 0, 0],
        [1, 2, 2, 2, 0, 0],
        [3, 3, 3, 3, 3, 4],
    ])  # fmt: skip
    instance = torch.tensor([
        [1, 1, 2, 2, 0, 0],
        [1, 1, 2, 2, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ])  # fmt: skip
    pan = merge_semantic_and_instance(
        semantic, instance, thing_classes=[1, 2], label_divisor=1000, stuff_area=2, void_label=255
    )
    # instance 1 (pixels 1,1,1,2): class 1 by majority; instance 2 (2,2,2,2): class 2
    assert pan[0, :2].tolist() == [1001, 1001] and pan[1, 1].item() == 1001
    assert pan[0, 2:4].tolist() == [2001, 2001]
    assert pan[0, 4].item() == 0 and pan[2, 0].item() == 3000  # stuff classes 0 and 3 (areas >= 2)
    assert pan[2, 5].item() == 255000  # stuff class 4 has 1 pixel < stuff_area: void
    # two instances of one class are numbered 1, 2 in order of instance id
    instance[:, 2:4] = 3
    semantic[:2, 2:4] = 1
    pan = merge_semantic_and_instance(semantic, instance, [1, 2], stuff_area=2)
    assert pan[0, 0].item() == 1001 and pan[0, 2].item() == 1002


def test_batched_post_processing():
    logits = torch.zeros(2, 3, 8, 8)
    logits[:, 1, :, :4] = 5.0  # thing class 1 on the left half
    logits[:, 0, :, 4:] = 5.0  # stuff class 0 on the right
    heat = torch.zeros(2, 1, 8, 8)
    heat[:, 0, 3, 1] = 0.9
    offsets = torch.zeros(2, 2, 8, 8)
    pan = panoptic_from_outputs(logits, heat, offsets, thing_classes=[1], stuff_area=4)
    assert pan.shape == (2, 8, 8)
    assert (pan[:, :, :4] == 1001).all() and (pan[:, :, 4:] == 0).all()
