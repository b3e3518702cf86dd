import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from atrous.data import SegmentationFolder, read_mask, voc_colormap
from atrous.data.folder import hold_out
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


def _plain_folder(root: Path, stems, size=(20, 20)) -> Path:
    """images/ + masks/ with no split files, three classes."""
    for stem in stems:
        _write_pair(root, stem, size=size)
    (root / "classes.json").write_text(json.dumps(["bg", "cat", "dog"]))
    return root


def _hash(stem: str) -> float:
    return int(hashlib.sha1(stem.encode()).hexdigest(), 16) / 16**40


def test_hold_out_without_split_files(tmp_path: Path):
    stems = [f"IMG_{i:04d}" for i in range(50)]
    root = _plain_folder(tmp_path, stems)
    (root / "README.txt").write_text("Photos from the field trip.\n")  # not a split file
    train, val = SegmentationFolder(root, "train"), SegmentationFolder(root, "val")
    expected_val = [s for s in stems if _hash(s) < 0.1]
    assert expected_val == ["IMG_0003", "IMG_0019", "IMG_0022", "IMG_0037", "IMG_0045", "IMG_0046"]
    assert val.stems == expected_val
    assert train.stems == [s for s in stems if s not in expected_val] and len(train) == 44
    assert SegmentationFolder(root, "val").stems == val.stems  # deterministic
    assert [p.stem for p, _ in val.samples] == val.stems
    assert val.held_out == train.held_out.replace("train.txt", "val.txt")
    assert train.held_out == (
        f"no train.txt in {root}: held out 6 of 50 images as val "
        "(val_fraction 0.1, by a hash of the file name), 44 as train"
    )
    assert len(SegmentationFolder(root)) == 50 and SegmentationFolder(root).held_out is None
    quarter = SegmentationFolder(root, "val", val_fraction=0.25)
    assert quarter.stems == [s for s in stems if _hash(s) < 0.25]
    assert set(val.stems) <= set(quarter.stems)  # a larger share only adds stems


def test_hold_out_is_stable_and_near_the_fraction():
    stems = [f"IMG_{i:05d}" for i in range(2000)]
    for fraction in (0.1, 0.25):
        splits = hold_out(stems, fraction)
        assert not set(splits["train"]) & set(splits["val"])
        assert sorted(splits["train"] + splits["val"]) == stems
        assert abs(len(splits["val"]) / 2000 - fraction) < 0.02
        assert hold_out(stems[::-1], fraction) == splits  # order of the listing does not matter
    assert len(hold_out(stems, 0.1)["val"]) == 222
    more = hold_out([*stems, *(f"NEW_{i}" for i in range(100))], 0.1)
    assert set(hold_out(stems, 0.1)["val"]) <= set(more["val"])  # new images move no old one


def test_hold_out_in_tiny_folders(tmp_path: Path):
    assert _hash("a") > 0.1 and _hash("c") > 0.1 and _hash("c") < _hash("a")
    assert hold_out(["a", "c"], 0.1) == {"train": ["a"], "val": ["c"]}  # smallest hash -> val
    assert hold_out(["a", "b", "c"], 0.99) == {"train": ["b"], "val": ["a", "c"]}  # train kept
    assert hold_out(["a"], 0.5) == {"train": ["a"], "val": []}
    root = _plain_folder(tmp_path / "two", ["a", "c"])
    assert SegmentationFolder(root, "val").stems == ["c"]
    assert SegmentationFolder(root, "train").stems == ["a"]
    assert "held out 1 of 2 images as val" in SegmentationFolder(root, "val").held_out
    one = _plain_folder(tmp_path / "one", ["a"])
    assert SegmentationFolder(one, "train").stems == ["a"]
    with pytest.raises(DataError, match=r"only 1 image; cannot hold out a 'val' split"):
        SegmentationFolder(one, "val")
    with pytest.raises(DataError, match=r"val_fraction=1.5: expected a share between 0 and 1"):
        SegmentationFolder(one, "train", val_fraction=1.5)


def test_split_files_win_over_the_hold_out(folder: Path):
    train = SegmentationFolder(folder, "train")
    assert train.stems == ["a", "b"] and train.held_out is None
    assert SegmentationFolder(folder, "val").stems == ["c"]
    (folder / "val.txt").unlink()  # train.txt alone: no hold-out, "val" is an error
    with pytest.raises(DataError, match=r"val\.txt: split file .* split files here: train\.txt"):
        SegmentationFolder(folder, "val")


def test_unknown_split_without_its_file(tmp_path: Path):
    root = _plain_folder(tmp_path, ["a", "b", "c"])
    with pytest.raises(DataError, match=r"test\.txt: split file for split 'test' not found"):
        SegmentationFolder(root, "test")


def test_mmseg_layout(tmp_path: Path):
    for split, stems in (("train", ["a", "b"]), ("val", ["c"])):
        for stem in stems:
            _write_pair(tmp_path / "tmp", stem, size=(20, 24))
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
        for stem in stems:
            shutil.move(tmp_path / "tmp" / "images" / f"{stem}.png", tmp_path / "images" / split)
            shutil.move(tmp_path / "tmp" / "masks" / f"{stem}.png", tmp_path / "masks" / split)
    train = SegmentationFolder(tmp_path, "train", num_classes=3)
    assert train.stems == ["a", "b"] and train.held_out is None
    assert train.samples[1] == (
        tmp_path / "images" / "train" / "b.png",
        tmp_path / "masks" / "train" / "b.png",
    )
    assert train[0][0].shape == (3, 20, 24)
    val = SegmentationFolder(tmp_path, "val", num_classes=3)
    assert val.stems == ["c"] and val[0][1].shape == (20, 24)
    assert SegmentationFolder(tmp_path, num_classes=3).stems == ["a", "b", "c"]  # every pair
    with pytest.raises(DataError, match=r"images/test: no folder for split 'test' \(split folders"):
        SegmentationFolder(tmp_path, "test", num_classes=3)
    (tmp_path / "masks" / "val" / "c.png").unlink()
    with pytest.raises(DataError, match=r"val/c\.png"):
        SegmentationFolder(tmp_path, "val", num_classes=3)
