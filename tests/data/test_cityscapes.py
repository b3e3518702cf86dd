from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from atrous.data.cityscapes import (
    CITYSCAPES_INFO,
    CITYSCAPES_LABELS,
    CityscapesSegmentation,
    cityscapes_label_map,
)
from atrous.errors import DataError

# Label id -> train id, written out by hand from cityscapesScripts helpers/labels.py (not derived
# from the module's table, so a typo there shows up here).
EXPECTED_TRAIN_ID = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255,
    7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255,
    17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15,
    29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

SIZE = (8, 16)  # H, W


def _write(
    root: Path,
    split: str,
    city: str,
    frame: int,
    labels: tuple[str, ...] = ("gtFine",),
    ids: np.ndarray | None = None,
    label_size: tuple[int, int] = SIZE,
) -> Path:
    """One image and its ``*_labelIds.png`` files in the official layout; returns the image."""
    stem = f"{city}_000000_{frame:06d}"
    image = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*SIZE, 3), 100, np.uint8)).save(image)
    if ids is None:
        ids = np.resize(np.array([7, 8, 26, 0], np.uint8), label_size)
    for kind in labels:
        label = root / kind / split / city / f"{stem}_{kind}_labelIds.png"
        label.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids.astype(np.uint8), mode="L").save(label)
    return image


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    both = ("gtFine", "gtCoarse")
    _write(tmp_path, "train", "aachen", 19, both)
    _write(tmp_path, "train", "aachen", 20, both)
    _write(tmp_path, "train", "bochum", 1, both)
    _write(tmp_path, "val", "frankfurt", 1, both)
    _write(tmp_path, "val", "lindau", 2, ("gtFine",))  # no coarse label: missing in coarse mode
    _write(tmp_path, "test", "berlin", 1)
    _write(tmp_path, "test", "bielefeld", 2)
    _write(tmp_path, "train_extra", "augsburg", 1, ("gtCoarse",))
    _write(tmp_path, "train_extra", "bad-honnef", 2, ("gtCoarse",))
    _write(tmp_path, "train_extra", "bad-honnef", 3, ("gtCoarse",))
    # Files that are not images of the layout are ignored.
    (tmp_path / "leftImg8bit" / "train" / "aachen" / "notes.txt").write_text("x")
    return tmp_path


def test_counts_per_split_and_mode(cityscapes: Path):
    assert len(CityscapesSegmentation(cityscapes, "train")) == 3
    assert len(CityscapesSegmentation(cityscapes, "val")) == 2
    assert len(CityscapesSegmentation(cityscapes, "test")) == 2
    assert len(CityscapesSegmentation(cityscapes, "train", mode="coarse")) == 3
    assert len(CityscapesSegmentation(cityscapes, "train_extra", mode="coarse")) == 3
    coarse_val = CityscapesSegmentation(cityscapes, "val", mode="coarse", strict=False)
    assert len(coarse_val) == 1 and len(coarse_val.missing) == 1
    assert "lindau_000000_000002_gtCoarse_labelIds.png" in coarse_val.missing[0]


def test_fine_and_coarse_read_their_own_labels(cityscapes: Path):
    fine = CityscapesSegmentation(cityscapes, "train")
    coarse = CityscapesSegmentation(cityscapes, "train", mode="coarse")
    assert [s[0] for s in fine.samples] == [s[0] for s in coarse.samples]
    assert all("gtFine" in s[1].parts and "gtFine_labelIds" in s[1].name for s in fine.samples)
    assert all("gtCoarse" in s[1].parts for s in coarse.samples)
    assert fine.samples[0][0].name == "aachen_000000_000019_leftImg8bit.png"  # sorted
    assert fine.samples[-1][0].parent.name == "bochum"


def test_split_not_in_mode(cityscapes: Path):
    with pytest.raises(DataError, match="fine annotations have no split 'train_extra'"):
        CityscapesSegmentation(cityscapes, "train_extra")
    with pytest.raises(DataError, match="coarse annotations have no split 'test'"):
        CityscapesSegmentation(cityscapes, "test", mode="coarse")
    with pytest.raises(DataError, match="mode 'medium'"):
        CityscapesSegmentation(cityscapes, "train", mode="medium")


def test_items_are_image_and_mask(cityscapes: Path):
    image, mask = CityscapesSegmentation(cityscapes, "val")[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert image.shape == (3, *SIZE)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert mask.shape == SIZE
    assert set(mask.unique().tolist()) == {0, 1, 13, 255}  # road, sidewalk, car, unlabeled


def test_every_label_id_maps_to_the_official_train_id(tmp_path: Path):
    ids = np.resize(np.arange(34, dtype=np.uint8), SIZE)  # 128 pixels hold every id 0..33
    _write(tmp_path, "train", "aachen", 1, ids=ids)
    _, mask = CityscapesSegmentation(tmp_path, "train")[0]
    for label_id, train_id in EXPECTED_TRAIN_ID.items():
        got = mask[torch.from_numpy(ids == label_id)]
        assert got.numel() > 0 and (got == train_id).all(), f"id {label_id}"
    lut = cityscapes_label_map()
    assert lut.shape == (34,) and lut.dtype == torch.int64
    assert lut.tolist() == [EXPECTED_TRAIN_ID[i] for i in range(34)]


def test_unlabeled_ids_become_ignore(tmp_path: Path):
    void = [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]
    ids = np.resize(np.array(void, np.uint8), SIZE)
    _write(tmp_path, "val", "lindau", 1, ids=ids)
    _, mask = CityscapesSegmentation(tmp_path, "val")[0]
    assert (mask == 255).all()


def test_label_table_rows():
    assert len(CITYSCAPES_LABELS) == 35  # ids 0..33 and the license plate (-1)
    assert sorted(lab.id for lab in CITYSCAPES_LABELS) == list(range(-1, 34))
    plate = next(lab for lab in CITYSCAPES_LABELS if lab.id == -1)
    assert plate.name == "license plate" and plate.train_id == 255


def test_info_classes_and_palette():
    info = CITYSCAPES_INFO
    assert info.num_classes == 19 and info.ignore_index == 255
    assert info.classes[:3] == ("road", "sidewalk", "building")
    assert info.classes[-1] == "bicycle" and info.classes[13] == "car"
    assert info.splits == ("train", "val", "test", "train_extra")
    assert info.palette.shape == (256, 3) and info.palette.dtype == np.uint8
    assert info.palette[0].tolist() == [128, 64, 128]  # road
    assert info.palette[1].tolist() == [244, 35, 232]  # sidewalk
    assert info.palette[2].tolist() == [70, 70, 70]  # building
    assert info.palette[10].tolist() == [70, 130, 180]  # sky
    assert info.palette[13].tolist() == [0, 0, 142]  # car
    assert info.palette[18].tolist() == [119, 11, 32]  # bicycle
    assert not info.palette[19:].any()
    with pytest.raises(AttributeError):
        info.classes = ()  # frozen


def test_missing_label_file(cityscapes: Path):
    (cityscapes / "gtFine/train/bochum/bochum_000000_000001_gtFine_labelIds.png").unlink()
    with pytest.raises(
        DataError,
        match=r"bochum_000000_000001_leftImg8bit\.png: image without a label file "
        r"\(expected .*gtFine.train.bochum.bochum_000000_000001_gtFine_labelIds\.png\)",
    ):
        CityscapesSegmentation(cityscapes, "train")
    data = CityscapesSegmentation(cityscapes, "train", strict=False)
    assert len(data) == 2 and len(data.missing) == 1


def test_missing_split_folder(tmp_path: Path):
    _write(tmp_path, "train", "aachen", 1)
    with pytest.raises(DataError, match=r"leftImg8bit.val: image folder not found"):
        CityscapesSegmentation(tmp_path, "val")
    with pytest.raises(DataError, match="image folder not found"):
        CityscapesSegmentation(tmp_path / "nowhere", "train")


def test_empty_split(tmp_path: Path):
    (tmp_path / "leftImg8bit" / "val" / "lindau").mkdir(parents=True)
    with pytest.raises(DataError, match=r"leftImg8bit.val: empty split"):
        CityscapesSegmentation(tmp_path, "val")


def test_label_of_a_different_size(tmp_path: Path):
    _write(tmp_path, "train", "aachen", 1, label_size=(8, 15))
    data = CityscapesSegmentation(tmp_path, "train")
    with pytest.raises(DataError, match=r"gtFine_labelIds\.png: mask size \(8, 15\).*differs"):
        data[0]


def test_label_ids_past_33_are_an_error(tmp_path):
    from atrous.data import map_labels
    from atrous.errors import DataError

    with pytest.raises(DataError, match=r"x_gtFine_labelIds\.png: raw label values \[34, 200\]"):
        map_labels(torch.tensor([7, 34, 200]), cityscapes_label_map(), "x_gtFine_labelIds.png")


def test_atrous_train_on_cityscapes(cityscapes: Path, tmp_path: Path):
    from atrous.training import train
    from tests.conftest import tiny_config

    cfg = tiny_config(
        cityscapes, tmp_path, "data.dataset=cityscapes", "data.crop_size=16", "train.steps=2"
    )
    result = train(cfg, progress=False)
    assert len(result["metrics"]["iou"]) == 19
