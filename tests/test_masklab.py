"""MaskLab: the model's outputs, its mask-head training boxes, direction features on the
synthetic scenes' touching same-class objects, the task's targets and loss, and a short
training run that lowers the loss."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F
from torchvision import tv_tensors

from atrous.data import build_dataset, make_synthetic_instances
from atrous.data.instances import instance_hflip
from atrous.models import MODELS, masklab
from atrous.models.direction_pooling import (
    direction_pool,
    direction_targets,
    flip_permutation,
    mask_box,
)
from atrous.models.masklab import sample_mask_rois
from atrous.tasks import TASKS
from atrous.tasks.masklab import collate, encode, masklab_loss


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory):
    root = make_synthetic_instances(
        tmp_path_factory.mktemp("instances"), num_train=8, num_val=12, seed=0
    )
    return build_dataset("coco_instances", root, "val")


def _small(**options: object):
    return masklab(
        backbone="mobilenetv2", num_classes=4, width_mult=0.25, channels=16,
        anchor_sizes=(16, 32), mask_size=14, **options,
    )  # fmt: skip


def _two_objects() -> dict[str, torch.Tensor]:
    masks = torch.zeros(2, 48, 64, dtype=torch.bool)
    masks[0, 4:30, 6:30] = True
    masks[1, 20:44, 30:60] = True
    return {
        "boxes": torch.stack([mask_box(m) for m in masks]),
        "labels": torch.tensor([1, 3]),
        "masks": masks,
        "iscrowd": torch.zeros(2, dtype=torch.bool),
    }


def test_registered_as_model_and_task() -> None:
    assert MODELS["masklab"] is masklab
    assert TASKS["masklab"].name == "masklab" and TASKS["masklab"].main_metric == "mask_ap"


def test_eval_outputs_semantic_logits_and_detections_at_image_size() -> None:
    model = _small().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 45, 61))
    assert out["semantic"].shape == (2, 4, 45, 61)
    assert len(out["detections"]) == 2
    for found in out["detections"]:
        k = len(found["boxes"])
        assert found["masks"].shape == (k, 45, 61) and found["labels"].shape == (k,)
        assert ((found["masks"] >= 0) & (found["masks"] <= 1)).all()
        assert (found["labels"] >= 1).all()


def test_segment_boxes_gives_one_mask_per_given_box() -> None:
    model = _small().eval()
    target = _two_objects()
    with torch.no_grad():
        (found,) = model.segment_boxes(
            torch.randn(1, 3, 48, 64), [target["boxes"]], [target["labels"]]
        )
    assert found["masks"].shape == (2, 48, 64)
    assert torch.equal(found["scores"], torch.ones(2))
    # the pasted mask lies inside its (1-pixel padded) box
    outside = found["masks"][0].clone()
    outside[3:31, 5:31] = 0
    assert outside.abs().max() == 0


def test_copies_of_the_model_keep_their_own_conv4_tap() -> None:
    """The trunk's conv5 hook keeps conv4 on the module: a deep copy (EMA, checkpoints) must
    run alone and give the same outputs."""
    model = _small().eval()
    twin = copy.deepcopy(model)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(twin(x)["semantic"], model(x)["semantic"])


def test_ablation_switches_remove_the_mask_head_parts() -> None:
    crop_only = _small(direction_pooling=False, hypercolumn=False)
    assert crop_only.mask_head.coarse.in_channels == 1 and crop_only.mask_head.refine is None
    full = _small()
    assert full.mask_head.coarse.in_channels == 2 and full.mask_head.refine is not None


def test_mask_rois_include_the_truth_with_its_masks_cropped() -> None:
    target = _two_objects()
    boxes, labels, crops = sample_mask_rois([torch.zeros(0, 4)], [target], 8, 14)
    # no proposals: the ground-truth boxes themselves, each holding its own rectangle
    assert len(boxes[0]) == 2 and crops.shape == (2, 14, 14)
    assert sorted(labels.tolist()) == [1, 3]
    assert crops.all()  # each mask fills its own box
    far = torch.tensor([[0.0, 0.0, 4.0, 4.0]])  # overlaps nothing: not a mask RoI
    boxes, _, _ = sample_mask_rois([far], [target], 8, 14)
    assert len(boxes[0]) == 2


def test_encode_makes_semantic_direction_and_instances() -> None:
    target = _two_objects()
    target["iscrowd"] = torch.tensor([False, True])
    out = encode(target)
    assert out["semantic"][10, 10] == 1 and out["semantic"][30, 40] == 255  # crowd ignored
    assert len(out["instances"]["boxes"]) == 1  # crowd is not an instance to detect
    assert out["direction"][30, 40] == 255 and out["direction"][10, 10] < 32


def test_direction_bins_permute_under_a_flip() -> None:
    """Mirroring the image permutes the bins (angle t -> pi - t, distance kept): off the bin
    edges, the flipped image's targets are the permuted targets, mirrored."""
    target = _two_objects()  # even-sided boxes: no pixel centre on v = 0 or u = 0
    image = torch.zeros(3, 48, 64, dtype=torch.uint8)
    as_read = {
        **target,
        "masks": tv_tensors.Mask(target["masks"]),
        "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(48, 64)),
    }
    _, flipped = instance_hflip(image, as_read)
    before = direction_targets(target["masks"])
    after = direction_targets(flipped["masks"].as_subclass(torch.Tensor))
    perm = torch.cat([flip_permutation(), torch.tensor([255])])
    expected = perm[before.clamp(max=32).where(before != 255, 32)].flip(-1)
    on = after != 255
    agree = (after[on] == expected[on]).float().mean()
    assert torch.equal(after == 255, expected == 255)
    assert agree > 0.97  # the rest lie on a diagonal bin edge (|u| = |v|)
    assert not torch.equal(after[on], before.flip(-1)[on])  # the bins do move


def test_direction_pooling_of_the_truth_splits_touching_scene_objects(scenes) -> None:
    """On the synthetic scenes' touching objects of one class, the semantic crop inside a
    ground-truth box merges the neighbour in; pooling the ground-truth direction maps gives
    back the box's own instance (IoU near 1) and drops most of the neighbour."""
    crop_iou, pooled_iou, touching = [], [], 0
    for index in range(len(scenes)):
        _, target = scenes[index]
        masks = target["masks"].as_subclass(torch.Tensor)
        labels = target["labels"]
        one_hot = F.one_hot(direction_targets(masks).clamp(max=32), 33)[..., :32]
        directions = one_hot.permute(2, 0, 1)[None].float()
        for mask, label in zip(masks, labels, strict=True):
            semantic = masks[labels == label].any(0)
            box = mask_box(mask)
            x1, y1, x2, y2 = (int(c) for c in box.tolist())
            own, merged = mask[y1:y2, x1:x2], semantic[y1:y2, x1:x2]
            if torch.equal(own, merged):
                continue  # no other object of its class in its box
            touching += 1
            rois = torch.cat([torch.zeros(1), box])[None]
            pooled = direction_pool(directions, rois, (y2 - y1, x2 - x1), sampling_ratio=1)
            kept = merged & (pooled[0, 0] > 0.5)
            crop_iou.append(float((own & merged).sum() / (own | merged).sum()))
            pooled_iou.append(float((own & kept).sum() / (own | kept).sum()))
    assert touching >= 10
    assert sum(pooled_iou) / touching > 0.95
    assert sum(pooled_iou) / touching > sum(crop_iou) / touching + 0.1


def test_training_lowers_the_loss(scenes) -> None:
    from atrous.data.instances import InstanceTrainTransforms
    from atrous.tasks.masklab import EncodeTargets

    augment = InstanceTrainTransforms(
        64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), scale_range=(0.5, 0.5), hflip=False
    )
    transform = EncodeTargets(augment, 8, 4)
    batch = collate([transform(*scenes.load(i)) for i in range(4)])
    model = _small().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss, terms = masklab_loss(model(batch[0], batch[1]["instances"]), batch[1])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(terms) == {"detector", "semantic", "direction", "mask"}
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


def test_demo_eval_and_predict_plumbing(tmp_path, capsys) -> None:
    """The demo's two-step run writes a checkpoint, metrics.json with mask and box AP as
    fractions and each instance's picture and JSON; atrous eval and predict on it print and
    write the instance outputs."""
    import json

    from atrous.cli import main
    from atrous.demo import DEMOS
    from atrous.demo_tasks import run_masklab_demo

    out = tmp_path / "demo"
    result = run_masklab_demo(out, steps=2, num_train=8, num_val=4, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["mask_ap"] <= 1.0 and 0.0 <= metrics["box_ap"] <= 1.0
    assert "mask AP" in DEMOS["masklab"].report(result, out)
    assert len(list((out / "predictions").glob("*_instances.jpg"))) == 4
    found = json.loads(next((out / "predictions").glob("*_instances.json")).read_text())
    assert set(found) >= {"image", "height", "width", "instances"}
    capsys.readouterr()
    data = out / "data"
    args = ["--checkpoint", str(out / "checkpoint.pt")]
    assert main(["eval", *args, "--dataset", "coco_instances", "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "masks" in printed and "boxes" in printed and "AP50" in printed
