import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from atrous.data import SegmentationFolder, read_mask, voc_colormap
from atrous.errors import DataError


def _write_pair(root: Path, stem: str, size=(20, 30), labels=(0, 1, 2), palette=True) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(root / "images" / f"{stem}.png")
    mask = np.resize(np.array(labels, np.uint8), (h, w))
    png = Image.fromarray(mask, mode="P" if palette else "L")
    if palette:
        png.putpalette(voc_colormap().ravel().tolist())
    png.save(root / "masks" / f"{stem}.png")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for stem in ("a", "b", "c"):
        _write_pair(tmp_path, stem)
    (tmp_path / "classes.json").write_text(json.dumps(["bg", "cat", "dog"]))
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("c\n")
    return tmp_path


def test_items_and_splits(folder: Path):
    train = SegmentationFolder(folder, "train")
    assert len(train) == 2 and train.classes == ("bg", "cat", "dog")
    assert len(SegmentationFolder(folder, "val")) == 1
    assert len(SegmentationFolder(folder)) == 3  # no split: every image
    image, mask = train[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert image.shape == (3, 20, 30)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert mask.shape == (20, 30)


def test_palette_png_read_by_index(tmp_path: Path):
    _write_pair(tmp_path, "p", labels=(0, 15, 255))
    mask = read_mask(tmp_path / "masks" / "p.png")
    assert set(mask.unique().tolist()) == {0, 15, 255}  # ids, not RGB colours


def test_grayscale_mask_and_num_classes_without_classes_json(tmp_path: Path):
    _write_pair(tmp_path, "g", labels=(0, 3), palette=False)
    data = SegmentationFolder(tmp_path, num_classes=4)
    assert data.num_classes == 4
    assert set(data[0][1].unique().tolist()) == {0, 3}
    with pytest.raises(DataError, match="number of classes"):
        SegmentationFolder(tmp_path)


def test_unreadable_image(folder: Path):
    (folder / "images" / "a.png").write_bytes(b"not an image at all")
    data = SegmentationFolder(folder, "train")
    with pytest.raises(DataError, match=r"a\.png: unreadable image"):
        data[0]


def test_mask_size_differs(folder: Path):
    _write_pair(folder, "tmp", size=(21, 30))
    shutil.move(folder / "masks" / "tmp.png", folder / "masks" / "b.png")
    with pytest.raises(DataError, match=r"b\.png: mask size \(21, 30\).*differs"):
        SegmentationFolder(folder, "train")[1]


def test_label_out_of_range(folder: Path):
    _write_pair(folder, "a", labels=(0, 2, 7, 255))
    with pytest.raises(DataError, match=r"a\.png: label values 7 are outside \[0, 3\)"):
        SegmentationFolder(folder, "train")[0]


def test_image_without_mask(folder: Path):
    (folder / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png: image without a mask"):
        SegmentationFolder(folder, "train")


def test_empty_folder(tmp_path: Path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="empty data folder"):
        SegmentationFolder(tmp_path, num_classes=2)
    with pytest.raises(DataError, match="no images/ folder"):
        SegmentationFolder(tmp_path / "nowhere", num_classes=2)


def test_colour_mask_rejected(folder: Path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a\.png: mask has mode 'RGB'"):
        SegmentationFolder(folder, "train")[0]


def test_split_errors(folder: Path):
    with pytest.raises(DataError, match=r"test\.txt: split file"):
        SegmentationFolder(folder, "test")
    (folder / "val.txt").write_text("c\nzzz\n")
    with pytest.raises(DataError, match="'zzz'"):
        SegmentationFolder(folder, "val")


def test_classes_json_conflicts_with_num_classes(folder: Path):
    with pytest.raises(DataError, match="lists 3 classes"):
        SegmentationFolder(folder, "train", num_classes=5)
