from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torchvision import tv_tensors

from atrous.data.palette import voc_colormap
from atrous.data.voc import VOC_CLASSES, VOC_INFO, VOCSegmentation, read_sbd_mask
from atrous.errors import DataError

SIZE = (12, 16)  # H, W


def _voc(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012"


def _sbd(root: Path) -> Path:
    return root / "benchmark_RELEASE" / "dataset"


def _labels(value: int) -> np.ndarray:
    """Background, a block of class ``value`` and a 255 border row."""
    mask = np.zeros(SIZE, np.uint8)
    mask[2:8, 3:10] = value
    mask[-1] = 255
    return mask


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*SIZE, 3), 120, np.uint8)).save(path, quality=90)


def _png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(labels, mode="P")
    png.putpalette(voc_colormap().ravel().tolist())
    png.save(path)


def _mat(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20,), dtype=object)  # one sparse edge map per class in real SBD
    for k in range(20):
        boundaries[k] = np.zeros(labels.shape, np.uint8)
    present = np.unique(labels[(labels > 0) & (labels < 255)]).astype(np.uint8)
    gt = {"Segmentation": labels, "Boundaries": boundaries, "CategoriesPresent": present}
    scipy.io.savemat(path, {"GTcls": gt})


def _split(path: Path, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def _add_voc(root: Path, i: str, label: int = 1, mask: bool = True) -> None:
    _jpeg(_voc(root) / "JPEGImages" / f"{i}.jpg")
    if mask:
        _png(_voc(root) / "SegmentationClass" / f"{i}.png", _labels(label))


def _add_sbd(root: Path, i: str, label: int = 2) -> None:
    _jpeg(_sbd(root) / "img" / f"{i}.jpg")
    _mat(_sbd(root) / "cls" / f"{i}.mat", np.where(_labels(label) == 255, 0, _labels(label)))


VOC_TRAIN = ["v_t1", "v_t2", "both_t"]
VOC_VAL = ["v_v1", "v_v2", "sbd_vv"]
SBD_TRAIN = ["s_t1", "s_t2", "both_t", "sbd_vv"]
SBD_VAL = ["s_v1", "s_t1"]  # s_t1 is in both SBD lists: counted once


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """VOC train 3 / val 3 (+ a JPEG-only image); SBD overlapping VOC train and VOC val."""
    for i in VOC_TRAIN:
        _add_voc(tmp_path, i, label=15)
    for i in VOC_VAL:
        _add_voc(tmp_path, i, label=1)
    _add_voc(tmp_path, "unlabelled", mask=False)  # in JPEGImages, listed nowhere (like VOC test)
    sets = _voc(tmp_path) / "ImageSets" / "Segmentation"
    _split(sets / "train.txt", VOC_TRAIN)
    _split(sets / "val.txt", VOC_VAL)
    _split(sets / "trainval.txt", VOC_TRAIN + VOC_VAL)
    for i in dict.fromkeys(SBD_TRAIN + SBD_VAL):
        _add_sbd(tmp_path, i, label=2)
    _split(_sbd(tmp_path) / "train.txt", SBD_TRAIN)
    _split(_sbd(tmp_path) / "val.txt", SBD_VAL)
    return tmp_path


def test_split_counts(voc: Path):
    assert len(VOCSegmentation(voc, "train")) == 3
    assert len(VOCSegmentation(voc, "val")) == 3
    assert len(VOCSegmentation(voc, "trainval")) == 6
    # root may also be VOCdevkit/VOC2012 itself
    assert len(VOCSegmentation(_voc(voc), "val")) == 3


def test_train_aug_arithmetic(voc: Path):
    data = VOCSegmentation(voc, "train_aug")
    # SBD train + SBD val + VOC train, deduplicated, minus VOC val (sbd_vv)
    assert data.ids == sorted(["s_t1", "s_t2", "s_v1", "both_t", "v_t1", "v_t2"])
    assert len(data) == 6
    sources = {i: m.parent.name for i, (_, m) in zip(data.ids, data.samples, strict=True)}
    assert sources == {
        "both_t": "SegmentationClass",
        "v_t1": "SegmentationClass",
        "v_t2": "SegmentationClass",
        "s_t1": "cls",
        "s_t2": "cls",
        "s_v1": "cls",
    }
    # both_t is labelled 15 (with 255 borders) in VOC and 2 in SBD: the VOC PNG is read
    both = data[data.ids.index("both_t")][1]
    assert set(both.unique().tolist()) == {0, 15, 255}
    sbd_only = data[data.ids.index("s_t2")][1]
    assert set(sbd_only.unique().tolist()) == {0, 2}


def test_train_aug_sbd_beside_vocdevkit_and_explicit(voc: Path, tmp_path_factory):
    # root = VOCdevkit/VOC2012: benchmark_RELEASE is found beside VOCdevkit
    assert len(VOCSegmentation(_voc(voc), "train_aug")) == 6
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (voc / "benchmark_RELEASE").rename(elsewhere / "benchmark_RELEASE")
    with pytest.raises(DataError, match=r"train_aug.*benchmark_RELEASE.*not found in"):
        VOCSegmentation(voc, "train_aug")
    assert len(VOCSegmentation(voc, "train_aug", sbd_root=elsewhere)) == 6
    assert len(VOCSegmentation(voc, "train_aug", sbd_root=elsewhere / "benchmark_RELEASE")) == 6
    assert len(VOCSegmentation(voc, "val", sbd_root=elsewhere / "nowhere")) == 3  # unused


def test_items(voc: Path):
    image, mask = VOCSegmentation(voc, "train")[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert image.shape == (3, *SIZE)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert mask.shape == SIZE
    assert set(mask.unique().tolist()) == {0, 15, 255}  # palette indices, ignore kept
    aug = VOCSegmentation(voc, "train_aug")
    _, sbd_mask = aug[aug.ids.index("s_t1")]  # from a .mat
    assert isinstance(sbd_mask, tv_tensors.Mask) and sbd_mask.dtype == torch.int64


def test_transforms_applied(voc: Path):
    data = VOCSegmentation(voc, "val", transforms=lambda image, mask: (image.flip(-1), mask + 0))
    image, mask = data[0]
    assert image.shape == (3, *SIZE) and mask.shape == SIZE


def test_classes_and_palette(voc: Path):
    data = VOCSegmentation(voc, "val")
    assert data.info is VOC_INFO and data.num_classes == 21 == len(VOC_CLASSES)
    assert data.classes[0] == "background" and data.classes[-1] == "tvmonitor"
    assert data.classes[1] == "aeroplane" and data.classes[15] == "person"
    assert VOC_INFO.splits == ("train", "val", "trainval", "train_aug")
    assert VOC_INFO.ignore_index == 255
    assert tuple(data.palette[0]) == (0, 0, 0)
    assert tuple(data.palette[1]) == (128, 0, 0)
    assert tuple(data.palette[15]) == (192, 128, 128)
    assert tuple(data.palette[255]) == (224, 224, 192)


def test_read_sbd_mask(voc: Path):
    mask = read_sbd_mask(_sbd(voc) / "cls" / "s_t1.mat")
    assert mask.dtype == torch.int64 and mask.shape == SIZE
    assert set(mask.unique().tolist()) == {0, 2}


def test_missing_jpeg_folder(tmp_path: Path):
    with pytest.raises(DataError, match=r"VOCdevkit/VOC2012/JPEGImages: folder not found"):
        VOCSegmentation(tmp_path, "train")


def test_unknown_split(voc: Path):
    with pytest.raises(DataError, match="unknown PASCAL VOC split 'test'"):
        VOCSegmentation(voc, "test")


def test_split_file_names_missing_image(voc: Path):
    sets = _voc(voc) / "ImageSets" / "Segmentation"
    _split(sets / "val.txt", [*VOC_VAL, "ghost", "ghost2"])
    with pytest.raises(DataError, match=r"val\.txt: 2 listed image\(s\) .*first: 'ghost'"):
        VOCSegmentation(voc, "val")
    _split(_sbd(voc) / "train.txt", [*SBD_TRAIN, "sbd_ghost"])
    with pytest.raises(DataError, match=r"dataset/train\.txt: .*first: 'sbd_ghost'"):
        VOCSegmentation(voc, "train_aug")


def test_missing_split_file(voc: Path):
    (_voc(voc) / "ImageSets" / "Segmentation" / "trainval.txt").unlink()
    with pytest.raises(DataError, match=r"trainval\.txt: split file for split 'trainval'"):
        VOCSegmentation(voc, "trainval")


def test_image_without_mask(voc: Path):
    (_voc(voc) / "SegmentationClass" / "v_t2.png").unlink()
    with pytest.raises(DataError, match=r"v_t2\.jpg: image without a mask"):
        VOCSegmentation(voc, "train")
    data = VOCSegmentation(voc, "train", strict=False)
    assert len(data) == 2 and len(data.missing) == 1
    # in train_aug, neither a VOC PNG nor an SBD .mat
    with pytest.raises(DataError, match=r"v_t2\.jpg: image without a mask.*v_t2\.mat"):
        VOCSegmentation(voc, "train_aug")


def test_label_out_of_range(voc: Path):
    _png(_voc(voc) / "SegmentationClass" / "v_t1.png", _labels(40))
    data = VOCSegmentation(voc, "train")
    with pytest.raises(DataError, match=r"v_t1\.png: label values 40 are outside \[0, 21\)"):
        data[0]


def test_corrupt_mat(voc: Path):
    (_sbd(voc) / "cls" / "s_t2.mat").write_bytes(b"this is not a MATLAB file" * 10)
    data = VOCSegmentation(voc, "train_aug")
    with pytest.raises(DataError, match=r"s_t2\.mat: unreadable \.mat file"):
        data[data.ids.index("s_t2")]


def test_mat_without_segmentation(tmp_path: Path):
    scipy.io.savemat(tmp_path / "a.mat", {"GTcls": {"Boundaries": np.zeros((2, 2), np.uint8)}})
    with pytest.raises(DataError, match=r"a\.mat: struct GTcls has no 'Segmentation' field"):
        read_sbd_mask(tmp_path / "a.mat")
    scipy.io.savemat(tmp_path / "b.mat", {"GTinst": {"Segmentation": np.zeros((2, 2), np.uint8)}})
    with pytest.raises(DataError, match=r"b\.mat: no 'GTcls' variable"):
        read_sbd_mask(tmp_path / "b.mat")


def test_atrous_train_on_voc(voc: Path, tmp_path: Path, capsys):
    from atrous.cli import main

    recipe = tmp_path / "voc.yaml"
    recipe.write_text(
        f"data:\n  dataset: voc\n  root: {voc}\n  train_split: train_aug\n  val_split: val\n"
        "  crop_size: 32\n  num_workers: 0\n"
        "model:\n  width_mult: 0.25\n  channels: 16\n"
        f"train:\n  steps: 2\n  batch_size: 2\n  out_dir: {tmp_path / 'run'}\n"
    )
    assert main(["train", "--config", str(recipe)]) == 0
    assert "aeroplane" in capsys.readouterr().out  # the VOC class table after evaluation
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "run" / "checkpoint.pt"),
                "--dataset",
                "voc",
                "--data",
                str(voc),
                "--split",
                "val",
            ]
        )
        == 0
    )
