"""Synthetic stick-figure parts: deterministic, read back as Person-Part, scales from tiny to
large, exact part instances, and the [3,H,W] target through the train transforms."""

from pathlib import Path

import numpy as np
import pytest
import torch

from atrous.data import (
    PersonPartPNG,
    build_dataset,
    make_synthetic_parts,
    object_size_buckets,
    train_transforms,
)
from atrous.data.synthetic_instances import _grow


@pytest.fixture(scope="module")
def parts_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_parts(tmp_path_factory.mktemp("parts"), num_train=30, num_val=3)


@pytest.fixture(scope="module")
def targets(parts_root: Path) -> list[np.ndarray]:
    data = build_dataset("person_part", parts_root, "train")
    return [data[i][1].numpy() for i in range(len(data))]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_files(tmp_path: Path):
    first = _files(make_synthetic_parts(tmp_path / "a", num_train=3, num_val=1, seed=5))
    again = _files(make_synthetic_parts(tmp_path / "b", num_train=3, num_val=1, seed=5))
    other = _files(make_synthetic_parts(tmp_path / "c", num_train=3, num_val=1, seed=6))
    assert first == again and len(first) == 4 * 3 + 2  # image, labels, instances; 2 lists
    assert first.keys() == other.keys() and first != other
    with pytest.raises(ValueError, match="max_objects"):
        make_synthetic_parts(tmp_path / "d", max_objects=0)


def test_read_back_as_person_part(parts_root: Path):
    data = build_dataset("person_part", parts_root, "val")
    assert isinstance(data, PersonPartPNG) and data.instances is not None and len(data) == 3
    assert data.num_classes == 7 and data.classes[3] == "upper arms"
    image, target = data[0]
    assert image.shape == (3, 128, 128) and image.dtype == torch.uint8
    assert target.shape == (3, 128, 128) and target.dtype == torch.int64


def test_ids_exact_and_unique_per_object_and_part(targets: list[np.ndarray]):
    for labels, objects, parts in targets:
        assert set(np.unique(labels).tolist()) <= set(range(7))
        assert np.array_equal(labels > 0, objects > 0) and np.array_equal(labels > 0, parts > 0)
        ids = np.unique(objects[objects > 0])
        assert ids.tolist() == list(range(1, len(ids) + 1))  # visible objects, numbered 1..O
        found = np.unique(np.stack([objects, labels, parts])[:, parts > 0], axis=1)
        assert len(np.unique(found[2])) == found.shape[1]  # a part id: one (object, class)
        assert np.unique(found[:2], axis=1).shape[1] == found.shape[1]  # (object, class): one id


def test_objects_span_the_sizes(targets: list[np.ndarray]):
    heights, buckets = [], []
    for target in targets:
        objects = target[1]
        for i in np.unique(objects[objects > 0]):
            rows = np.nonzero((objects == i).any(axis=1))[0]
            heights.append(rows[-1] - rows[0] + 1)
        buckets += object_size_buckets(target).values()
    heights = np.array(heights)
    assert len(heights) >= 40 and heights.min() <= 16 and heights.max() >= 80
    assert 0.2 <= (heights < 30).mean() <= 0.6  # about a third tiny or small
    assert {"XS", "S", "M", "L"} <= set(buckets)


def test_objects_sometimes_touch(targets: list[np.ndarray]):
    touching = 0
    for _, objects, _ in targets:
        ids = np.unique(objects[objects > 0])
        touching += any(
            (_grow(objects == a) & (objects == b)).any() for a in ids for b in ids if a < b
        )
    assert touching >= 3


def test_target_channels_stay_aligned_through_train_transforms(parts_root: Path):
    torch.manual_seed(0)
    data = build_dataset("person_part", parts_root, "train", train_transforms(96))
    plain = build_dataset("person_part", parts_root, "train")
    for i in range(4):
        image, target = data[i]
        assert image.shape == (3, 96, 96) and image.dtype == torch.float32
        assert target.shape == (3, 96, 96) and target.dtype == torch.int64
        before = {tuple(t) for t in plain[i][1].flatten(1).T.tolist()}
        after = {tuple(t) for t in target.flatten(1).T.tolist()}
        assert after <= before | {(255, 255, 255)}  # nearest: each pixel one source pixel
        assert len(after - {(255, 255, 255)}) > 1
