"""PersonLab: targets by hand, the encode -> decode round trip (OKS 1.0 through pycocotools on
generated people, several per image, touching), Hough voting against a loop, the refinement
against a hand bilinear read, the soft keypoint NMS, and the model's outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from atrous.data.person_keypoints import TREE_EDGES
from atrous.metrics import PersonAP, oks
from atrous.models import build_model
from atrous.models.personlab import refine, sample_offsets
from atrous.tasks.personlab import decode, encode, people_of, person_semantic
from atrous.tasks.personlab_decode import hough_votes, instance_scores
from atrous.tasks.personlab_targets import directed_edges, personlab_loss


def _person(points: list[tuple[float, float, int]], mask: np.ndarray) -> dict:
    return {"keypoints": torch.tensor(points, dtype=torch.float32), "mask": torch.tensor(mask)}


def _two_keypoint_person(h: int = 40, w: int = 50) -> dict:
    points = [(0.0, 0.0, 0)] * 17
    points[0] = (20.0, 10.0, 2)  # nose
    points[1] = (24.0, 13.0, 2)  # left eye
    mask = np.zeros((h, w), bool)
    mask[5:20, 15:30] = True
    return _person(points, mask)


def test_encode_by_hand() -> None:
    t = encode([_two_keypoint_person()], (40, 50), radius=5.0)
    assert t["heatmap"].shape == (17, 40, 50) and t["mid"].shape == (32, 2, 40, 50)
    disk = sum(1 for y in range(40) for x in range(50) if (x - 19.5) ** 2 + (y - 9.5) ** 2 <= 25)
    assert int(t["heatmap"][0].sum()) == disk and int(t["heatmap"][2].sum()) == 0
    # pixel (col 22, row 12) has its centre at (22.5, 12.5): the nose (20, 10) is (-2.5, -2.5) away
    assert t["short"][0, :, 12, 22].tolist() == [-2.5, -2.5]
    assert t["mid"][0, :, 12, 22].tolist() == [1.5, 0.5]  # edge nose -> left eye (24, 13)
    assert t["mid"][16, :, 13, 24].tolist() == [-4.5, -3.5]  # left eye -> nose
    assert t["mid_weight"][1].sum() == 0  # nose -> right eye: the right eye is unlabelled
    assert t["long"][1, :, 6, 16].tolist() == [7.5, 6.5] and t["long_weight"][1, 0, 0] == 0
    assert t["long_weight"][2].sum() == 0  # the right eye is unlabelled
    assert t["seg"].sum() == 15 * 15 and t["seg_weight"].min() == 1


def test_encode_ignores_crowd_and_unannotated_people() -> None:
    crowd_mask = np.zeros((40, 50), bool)
    crowd_mask[30:, :10] = True
    nobody = np.zeros((40, 50), bool)
    nobody[30:, 40:] = True
    people = [
        _two_keypoint_person(),
        {**_person([(0.0, 0.0, 0)] * 17, crowd_mask), "crowd": True},
        _person([(0.0, 0.0, 0)] * 17, nobody),
    ]
    t = encode(people, (40, 50), radius=5.0)
    assert t["heatmap_weight"][30:, :10].sum() == 0 and t["heatmap_weight"][30:, 40:].sum() == 0
    assert t["seg_weight"][30:, :10].sum() == 0  # crowd: out of the segmentation loss too
    assert t["seg_weight"][30:, 40:].min() == 1 and t["seg"][30:, 40:].min() == 1
    semantic = person_semantic(
        {"masks": torch.stack([p["mask"] for p in people]), "iscrowd": torch.tensor([0, 1, 0])}
    )
    assert semantic[30, 0] == 255 and semantic[30, 45] == 1 and semantic[0, 0] == 0


def _stick_people(seed: int, count: int, size: tuple[int, int]) -> list[dict]:
    """Generated people side by side, touching (visible masks are disjoint: the earlier person
    is in front), each with two unlabelled keypoints."""
    rng = np.random.default_rng(seed)
    h, w = size
    taken = np.zeros(size, bool)
    people = []
    for j in range(count):
        cx, cy = w * (j + 0.5) / count, h / 2
        points = np.zeros((17, 3), np.float32)
        points[:, 0] = cx + rng.uniform(-0.3, 0.3, 17) * w / count
        points[:, 1] = cy + rng.uniform(-0.4, 0.4, 17) * h
        points[:, 2] = 2
        points[rng.choice(17, 2, replace=False), 2] = 0
        canvas = Image.new("L", (w, h))
        draw = ImageDraw.Draw(canvas)
        for a, b in TREE_EDGES:
            draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=1, width=9)
        mask = (np.array(canvas) > 0) & ~taken
        taken |= mask
        points[points[:, 2] == 0, :2] = 0  # as COCO writes unlabelled keypoints
        people.append({"keypoints": torch.from_numpy(points), "mask": torch.from_numpy(mask)})
    return people


@pytest.mark.parametrize(("seed", "count"), [(0, 4), (1, 3), (2, 5)])
def test_decode_of_encode_gives_back_every_person(seed: int, count: int) -> None:
    size = (120, 48 * count)
    people = _stick_people(seed, count, size)
    found = decode(encode(people, size))
    assert len(found) == count
    ap = PersonAP()
    truth = {
        "keypoints": torch.stack([p["keypoints"] for p in people]),
        "masks": torch.stack([p["mask"] for p in people]),
        "iscrowd": torch.zeros(count, dtype=torch.bool),
    }
    ap.update(0, size, truth, found)
    for person in people:
        match = max(found, key=lambda f: int((f["mask"] & person["mask"]).sum()))
        assert torch.equal(match["mask"], person["mask"])
        assert oks(match["keypoints"], person["keypoints"], float(person["mask"].sum())) == 1.0
    scores = ap.compute()
    assert scores["keypoint_ap"] == 1.0 and scores["mask_ap"] == 1.0


def test_hough_votes_match_a_loop() -> None:
    torch.manual_seed(0)
    heat = torch.rand(2, 6, 7)
    short = torch.randn(2, 2, 6, 7) * 2
    expected = torch.zeros(2, 6, 7)
    for k in range(2):
        for y in range(6):
            for x in range(7):
                px, py = x + float(short[k, 0, y, x]), y + float(short[k, 1, y, x])
                x0, y0 = math.floor(px), math.floor(py)
                for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    b = max(0.0, 1 - abs(px - xi)) * max(0.0, 1 - abs(py - yi))
                    if 0 <= xi < 7 and 0 <= yi < 6:
                        expected[k, yi, xi] += heat[k, y, x] * b
    got = hough_votes(heat, short, radius=3.0, vote_min=0.0) * math.pi * 9
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_refine_reads_the_short_offsets_where_the_offset_points() -> None:
    torch.manual_seed(0)
    offsets = torch.randn(1, 1, 2, 5, 6, requires_grad=True)
    short = torch.randn(1, 1, 2, 5, 6)
    once = refine(offsets, short, [0], steps=1)
    x, y = 2, 3
    o = offsets.detach()
    px, py = x + float(o[0, 0, 0, y, x]), y + float(o[0, 0, 1, y, x])
    px, py = min(max(px, 0), 5), min(max(py, 0), 4)
    x0, y0 = min(int(px), 4), min(int(py), 3)
    fx, fy = px - x0, py - y0
    s = short[0, 0, :, :, :]
    read = (
        s[:, y0, x0] * (1 - fx) * (1 - fy) + s[:, y0, x0 + 1] * fx * (1 - fy)
        + s[:, y0 + 1, x0] * (1 - fx) * fy + s[:, y0 + 1, x0 + 1] * fx * fy
    )  # fmt: skip
    torch.testing.assert_close(once[0, 0, :, y, x], offsets[0, 0, :, y, x] + read)
    once.sum().backward()  # the refinement is inside the graph
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0
    torch.testing.assert_close(sample_offsets(short, torch.zeros(1, 1, 2, 5, 6))[0, 0, :, 1, 1],
                               short[0, 0, :, 0, 0])  # fmt: skip


def test_soft_keypoint_nms_scores_a_duplicate_zero() -> None:
    person = np.zeros((17, 3))
    person[:, 0] = np.arange(17) * 20
    scores = [np.full(17, 0.9), np.full(17, 0.5)]
    moved = person.copy()
    moved[:8, 0] += 100  # 8 keypoints away, 9 on top of the first person's
    totals = instance_scores([person, moved], scores)
    assert totals[0] == pytest.approx(0.9)
    assert totals[1] == pytest.approx(0.5 * 8 / 17)


def test_model_outputs_losses_and_decoding() -> None:
    torch.manual_seed(0)
    model = build_model("personlab", backbone="mobilenetv2", width_mult=0.25, channels=32,
                        radius=8.0)  # fmt: skip
    size = (64, 64)
    people = _stick_people(0, 2, size)
    targets = encode(people, size, radius=8.0)
    batch = {key: value[None] for key, value in targets.items()}
    out = model(torch.randn(1, 3, *size))
    assert out["mid"].shape == (1, len(directed_edges()), 2, 64, 64)
    loss, parts = personlab_loss(out, batch, radius=8.0)
    assert set(parts) == {"heatmap", "seg", "short", "mid", "long"} and loss.isfinite()
    loss.backward()
    model.eval()
    fields = model(torch.randn(1, 3, *size))
    assert fields["semantic"].shape == (1, 2, 64, 64) and fields["heatmap"].max() <= 1
    people = decode({key: value[0] for key, value in fields.items()}, radius=8.0)
    assert all(p["keypoints"].shape == (17, 3) and p["mask"].shape == size for p in people)


def test_builder_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="num_classes 2"):
        build_model("personlab", backbone="mobilenetv2", num_classes=21)
    with pytest.raises(ValueError, match="17 keypoints"):
        build_model("personlab", backbone="mobilenetv2", num_keypoints=5)


def test_round_trip_on_the_synthetic_people(tmp_path) -> None:
    from atrous.data import build_dataset, make_synthetic_people

    root = make_synthetic_people(tmp_path, num_train=1, num_val=12, seed=3)
    dataset = build_dataset("coco_keypoints", root, "val")
    ap = PersonAP()
    for index in range(len(dataset)):
        image, target = dataset[index]
        size = tuple(image.shape[-2:])
        people = decode(encode(people_of(target), size, radius=10.0), radius=10.0)
        # people without a labelled keypoint are not encoded (ignored), so nothing can bring
        # them back; COCO's mask AP counts them, its keypoint AP does not
        labelled = (target["keypoints"][..., 2] > 0).any(1)
        truth = {key: target[key][labelled] for key in ("keypoints", "masks", "iscrowd")}
        ap.update(target["image_id"], size, truth, people)
    scores = ap.compute()
    assert scores["people"] >= 24
    assert scores["keypoint_ap"] == 1.0 and scores["mask_ap"] == 1.0


def test_refining_on_the_os4_maps_matches_the_input_size_on_linear_fields() -> None:
    # short offsets pulling every pixel halfway to (20, 16), constant offsets (1, -1): the
    # refinement is the same linear map at any resolution, and bilinear upsampling keeps it
    # (away from the border, where each map clamps its reads at its own edge)
    h, w, stride = 8, 10, 4
    rows, cols = torch.arange(h * stride).float(), torch.arange(w * stride).float()
    big_grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij")[::-1])
    target = torch.tensor([20.0, 16.0])[:, None, None]
    coarse = (torch.stack(torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(),
                                         indexing="ij")[::-1]) + 0.5) * stride - 0.5  # fmt: skip
    offsets = torch.tensor([1.0, -1.0])[:, None, None]
    fine = refine(
        offsets.expand(1, 1, 2, h * stride, w * stride),
        (0.5 * (target - big_grid))[None, None], [0], steps=2,
    )  # fmt: skip
    small = refine(
        offsets.expand(1, 1, 2, h, w), (0.5 * (target - coarse))[None, None], [0], steps=2,
        stride=stride,
    )  # fmt: skip
    up = torch.nn.functional.interpolate(small[0], scale_factor=stride, mode="bilinear")
    torch.testing.assert_close(up[0, :, 8:-8, 8:-8], fine[0, 0, :, 8:-8, 8:-8])


def test_decode_says_what_is_wrong_with_its_fields() -> None:
    fields = encode(_stick_people(0, 2, (64, 96)), (64, 96))
    with pytest.raises(ValueError, match="missing long"):
        decode({k: v for k, v in fields.items() if k != "long"})
    with pytest.raises(ValueError, match=r"index a batch's fields with \[i\]"):
        decode({k: v[None] for k, v in fields.items()})
    with pytest.raises(ValueError, match="seg must be"):
        decode({**fields, "seg": fields["seg"][:10]})
