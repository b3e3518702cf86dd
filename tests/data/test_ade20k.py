from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from atrous.data.ade20k import (
    ADE20K_CLASSES,
    ADE20K_INFO,
    ADE20K_LABEL_MAP,
    ADE20KSegmentation,
)
from atrous.errors import DataError


def _write_pair(data: Path, folder: str, stem: str, labels=(0, 1, 150), size=(12, 16)) -> None:
    """One JPEG image and its 8-bit grayscale annotation PNG, as in ADEChallengeData2016."""
    image_dir, mask_dir = data / "images" / folder, data / "annotations" / folder
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(image_dir / f"{stem}.jpg")
    mask = np.resize(np.array(labels, np.uint8), (h, w))
    Image.fromarray(mask, mode="L").save(mask_dir / f"{stem}.png")


@pytest.fixture
def ade(tmp_path: Path) -> Path:
    data = tmp_path / "ADEChallengeData2016"
    for i in (1, 2, 3):
        _write_pair(data, "training", f"ADE_train_{i:08d}")
    for i in (1, 2):
        _write_pair(data, "validation", f"ADE_val_{i:08d}")
    return tmp_path


def test_counts_and_items(ade: Path):
    train = ADE20KSegmentation(ade, "train")
    assert len(train) == 3 and len(ADE20KSegmentation(ade, "val")) == 2
    assert train.samples[0][0].name == "ADE_train_00000001.jpg"
    image, mask = train[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, 12, 16)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert mask.shape == (12, 16)


def test_root_may_be_the_challenge_folder(ade: Path):
    assert len(ADE20KSegmentation(ade / "ADEChallengeData2016", "val")) == 2


def test_label_shift(ade: Path):
    _write_pair(ade / "ADEChallengeData2016", "training", "ADE_train_00000001", (0, 1, 2, 150))
    raw = np.resize(np.array([0, 1, 2, 150]), (12, 16))
    _, mask = ADE20KSegmentation(ade, "train")[0]
    expected = np.select([raw == 0, raw == 1, raw == 2, raw == 150], [255, 0, 1, 149])
    assert np.array_equal(mask.numpy(), expected)
    assert ADE20K_LABEL_MAP.tolist() == [255, *range(150)]


def test_raw_id_above_150(ade: Path):
    _write_pair(ade / "ADEChallengeData2016", "validation", "ADE_val_00000002", (0, 151))
    data = ADE20KSegmentation(ade, "val")
    with pytest.raises(DataError, match=r"ADE_val_00000002\.png: raw label values \[151\]"):
        data[1]


def test_missing_annotation(ade: Path):
    (ade / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(DataError, match=r"ADE_train_00000002\.jpg: image without an annotation"):
        ADE20KSegmentation(ade, "train")
    lenient = ADE20KSegmentation(ade, "train", strict=False)
    assert len(lenient) == 2 and len(lenient.missing) == 1


def test_missing_folders_and_bad_split(ade: Path, tmp_path: Path):
    with pytest.raises(DataError, match="no ADEChallengeData2016/ folder"):
        ADE20KSegmentation(tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown ADE20K split 'test'"):
        ADE20KSegmentation(ade, "test")
    images = ade / "ADEChallengeData2016" / "images"
    for path in (images / "validation").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"validation: empty data folder"):
        ADE20KSegmentation(ade, "val")
    (images / "validation").rmdir()
    with pytest.raises(DataError, match=r"validation: image folder for split 'val' not found"):
        ADE20KSegmentation(ade, "val")


def test_info():
    assert ADE20K_INFO.num_classes == 150 == len(set(ADE20K_CLASSES))
    assert ADE20K_INFO.classes is ADE20K_CLASSES and ADE20K_INFO.splits == ("train", "val")
    assert ADE20K_CLASSES[0] == "wall" and ADE20K_CLASSES[2] == "sky"
    assert ADE20K_CLASSES[12] == "person" and ADE20K_CLASSES[20] == "car"
    assert ADE20K_CLASSES[44] == "chest of drawers" and ADE20K_CLASSES[149] == "flag"
    assert ADE20K_INFO.ignore_index == 255
    palette = ADE20K_INFO.palette
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette[:150]}) == 150  # one colour per class
    assert not palette.flags.writeable


def test_atrous_train_on_ade20k(ade: Path, tmp_path: Path):
    from atrous.training import train
    from tests.conftest import tiny_config

    cfg = tiny_config(
        ade, tmp_path / "run", "data.dataset=ade20k", "data.crop_size=16", "train.steps=2"
    )
    assert len(train(cfg, progress=False)["metrics"]["iou"]) == 150
