from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torchvision import tv_tensors

from atrous.data.context import (
    CONTEXT_SPLITS,
    PascalContextSegmentation,
    context_label_map,
    read_context_label,
)
from atrous.data.palette import voc_colormap
from atrous.errors import DataError

LABELS = {1: "accordion", 2: "aeroplane", 9: "bag", 23: "bicycle", 40: "bus", 459: "wood"}
KEPT = {23: "bicycle", 2: "aeroplane", 459: "wood"}  # file order, not id order
SIZE = (10, 14)


def _write_sample(root: Path, image_id: str, ids=(0, 1, 2, 9, 23, 459), dtype=np.uint16) -> None:
    jpegs = root / "VOCdevkit" / "VOC2010" / "JPEGImages"
    labels = root / "PASCAL-Context" / "trainval"
    jpegs.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*SIZE, 3), 80, np.uint8)).save(jpegs / f"{image_id}.jpg")
    label_map = np.resize(np.array(ids, dtype), SIZE)
    savemat(labels / f"{image_id}.mat", {"LabelMap": label_map})


@pytest.fixture
def context(tmp_path: Path) -> Path:
    for image_id in ("2008_000002", "2008_000003", "2008_000007"):
        _write_sample(tmp_path, image_id)
    labels = tmp_path / "PASCAL-Context"
    (labels / "labels.txt").write_text("".join(f"{i}: {n}\n" for i, n in LABELS.items()))
    (labels / "59_labels.txt").write_text("".join(f"{i}: {n}\n" for i, n in KEPT.items()))
    (labels / "train.txt").write_text("2008_000002\n2008_000003\n")
    (labels / "val.txt").write_text("2008_000007\n")
    return tmp_path


def test_counts_items_and_info(context: Path):
    train = PascalContextSegmentation(context, "train")
    assert len(train) == 2 and len(PascalContextSegmentation(context, "val")) == 1
    assert train.classes == ("background", "bicycle", "aeroplane", "wood")
    assert train.num_classes == 4 and train.info.splits == CONTEXT_SPLITS == ("train", "val")
    assert np.array_equal(train.palette, voc_colormap())
    image, mask = train[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, *SIZE)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64 and mask.shape == SIZE


def test_mapping(context: Path):
    raw = np.resize(np.array([0, 1, 2, 9, 23, 459]), SIZE)
    _, mask = PascalContextSegmentation(context, "val")[0]
    # kept ids -> 1-based position in 59_labels.txt; 0 and the other ids -> background
    expected = np.select([raw == 23, raw == 2, raw == 459], [1, 2, 3], default=0)
    assert np.array_equal(mask.numpy(), expected)
    classes, lut = context_label_map(context / "PASCAL-Context")
    assert len(lut) == 460 and lut[[23, 2, 459]].tolist() == [1, 2, 3]
    assert int(lut.sum()) == 6 and classes[0] == "background"


def test_context_root_elsewhere_and_voc_split_lists(context: Path, tmp_path: Path):
    moved = tmp_path / "elsewhere"
    (context / "PASCAL-Context").rename(moved)
    sets = context / "VOCdevkit" / "VOC2010" / "ImageSets" / "SegmentationContext"
    sets.mkdir(parents=True)
    (moved / "val.txt").rename(sets / "val.txt")
    assert len(PascalContextSegmentation(context, "train", context_root=moved)) == 2
    assert len(PascalContextSegmentation(context, "val", context_root=moved)) == 1
    with pytest.raises(DataError, match="PASCAL-Context folder not found"):
        PascalContextSegmentation(context, "train")


def test_float_label_map_accepted(context: Path):
    _write_sample(context, "2008_000007", ids=(2.0, 40.0), dtype=np.float64)
    _, mask = PascalContextSegmentation(context, "val")[0]
    assert set(mask.unique().tolist()) == {0, 2}


def test_missing_mat(context: Path):
    (context / "PASCAL-Context" / "trainval" / "2008_000003.mat").unlink()
    with pytest.raises(DataError, match=r"2008_000003\.jpg: image without a label map"):
        PascalContextSegmentation(context, "train")
    lenient = PascalContextSegmentation(context, "train", strict=False)
    assert len(lenient) == 1 and len(lenient.missing) == 1


def test_corrupt_mat(context: Path):
    (context / "PASCAL-Context" / "trainval" / "2008_000007.mat").write_bytes(b"garbage" * 20)
    data = PascalContextSegmentation(context, "val")
    with pytest.raises(DataError, match=r"2008_000007\.mat: unreadable \.mat label file"):
        data[0]
    path = context / "PASCAL-Context" / "trainval" / "2008_000002.mat"
    savemat(path, {"Other": np.zeros(SIZE)})
    with pytest.raises(DataError, match=r"2008_000002\.mat: expected a 2-D 'LabelMap'"):
        read_context_label(path)


def test_label_outside_the_label_set(context: Path):
    _write_sample(context, "2008_000007", ids=(2, 460))
    with pytest.raises(DataError, match=r"2008_000007\.mat: raw label values \[460\]"):
        PascalContextSegmentation(context, "val")[0]


def test_malformed_label_files(context: Path):
    labels = context / "PASCAL-Context"
    (labels / "59_labels.txt").write_text("23: bicycle\naeroplane\n")
    with pytest.raises(DataError, match=r"59_labels\.txt:2: expected '<id>: <name>'"):
        PascalContextSegmentation(context)
    (labels / "59_labels.txt").write_text("23: bicycle\n77: nothing\n")
    with pytest.raises(DataError, match=r"59_labels\.txt: ids \[77\] are not in"):
        PascalContextSegmentation(context)
    (labels / "59_labels.txt").write_text("23: bicycle\n23: bike\n")
    with pytest.raises(DataError, match=r"59_labels\.txt:2: id 23 is listed twice"):
        PascalContextSegmentation(context)
    (labels / "labels.txt").unlink()
    with pytest.raises(DataError, match=r"labels\.txt: label file not found"):
        PascalContextSegmentation(context)


def test_split_and_folder_errors(context: Path, tmp_path: Path):
    with pytest.raises(DataError, match=r"test\.txt: split file for split 'test' not found"):
        PascalContextSegmentation(context, "test")
    (context / "PASCAL-Context" / "val.txt").write_text("2008_000007\n2010_999999\n")
    with pytest.raises(DataError, match=r"val\.txt: 1 listed images not found.*'2010_999999'"):
        PascalContextSegmentation(context, "val")
    nowhere = tmp_path / "nowhere"
    (nowhere / "PASCAL-Context").mkdir(parents=True)
    with pytest.raises(DataError, match="no VOCdevkit/VOC2010/JPEGImages/ folder"):
        PascalContextSegmentation(nowhere)


def test_atrous_train_on_context(context: Path, tmp_path: Path):
    from atrous.training import train
    from tests.conftest import tiny_config

    cfg = tiny_config(
        context, tmp_path / "run", "data.dataset=context", "data.crop_size=16", "train.steps=2"
    )
    assert len(train(cfg, progress=False)["metrics"]["iou"]) == 4
