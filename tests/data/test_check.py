import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.data import DATASETS, build_dataset, make_synthetic_dataset
from atrous.data.check import check_dataset
from atrous.errors import DataError


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    root = make_synthetic_dataset(tmp_path / "d", num_train=5, num_val=1, size_range=(20, 24))
    (root / "masks" / "train_0000.png").unlink()  # image without a mask
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "train_0001.png")  # size
    bad = np.array(Image.open(root / "masks" / "train_0002.png"))
    bad[0, :3] = [7, 9, 7]  # labels outside [0, 5) and 255
    Image.fromarray(bad).save(root / "masks" / "train_0002.png")
    return root


def test_check_collects_every_problem(broken: Path):
    report = check_dataset(build_dataset("folder", broken, "train", strict=False), progress=False)
    assert not report.ok
    assert report.num_images == 4 and len(report.missing) == 1
    assert "train_0000.jpg: image without a mask" in report.missing[0]
    assert len(report.errors) == 2
    assert "train_0001.png: mask size (5, 5)" in report.errors[0]
    assert "train_0002.png: label values 7, 9" in report.errors[1]
    assert len(report.pixel_counts) == 5 and sum(report.pixel_counts) > 0
    assert "FAILED" in report.format()


def test_cli_exit_codes(broken: Path, tmp_path: Path, capsys):
    assert main(["data", "check", "--root", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "train_0002.png" in out and "1 images without a mask" in out
    clean = make_synthetic_dataset(tmp_path / "clean", num_train=3, num_val=1, size_range=(20, 24))
    assert main(["data", "check", "--root", str(clean), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "background" in out


def test_build_dataset_names_and_errors(tmp_path: Path):
    assert "folder" in DATASETS
    root = make_synthetic_dataset(tmp_path / "d", num_train=2, num_val=1, size_range=(20, 24))
    assert len(build_dataset("folder", root, "train")) == 2
    with pytest.raises(DataError, match="unknown dataset 'kitti'"):
        build_dataset("kitti", root)
    with pytest.raises(DataError, match="image without a mask"):
        shutil.rmtree(root / "masks")
        (root / "masks").mkdir()
        build_dataset("folder", root, "train")
