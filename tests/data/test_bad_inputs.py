"""Bad input is named where it enters (issue #28): images read as they display (EXIF), a
decompression bomb one DataError naming the file, its size and the limit, unreadable files one
line, and ``data check`` listing every bad file while it reads the good ones."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image

from atrous.data import (
    build_dataset,
    image_size,
    make_synthetic_dataset,
    read_image,
    read_json,
    read_mask,
)
from atrous.data.check import check_annotation_files, check_dataset
from atrous.data.palette import save_palette_png, voc_colormap
from atrous.errors import DataError

RED, BLUE, GREEN, WHITE = (220, 20, 20), (20, 20, 220), (20, 200, 20), (240, 240, 240)


def _quadrants() -> np.ndarray:
    """A 16x32 (HxW) RGB image of four flat 8x16 quadrants, as a camera sensor stores it."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:8, :16], stored[:8, 16:], stored[8:, :16], stored[8:, 16:] = RED, BLUE, GREEN, WHITE
    return stored


def _save_oriented(path: Path, stored: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif, quality=95)


DISPLAYED = {  # what a viewer shows of the stored pixels for each EXIF orientation
    1: lambda a: a,
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    6: lambda a: np.rot90(a, k=-1),  # turned 90 degrees clockwise
}


@pytest.mark.parametrize("orientation", [1, 3, 6])
def test_jpeg_is_read_as_it_displays(tmp_path: Path, orientation: int):
    path = tmp_path / "phone.jpg"
    stored = _quadrants()
    _save_oriented(path, stored, orientation)
    shown = DISPLAYED[orientation](stored)
    image = read_image(path)
    assert tuple(image.shape) == (3, *shown.shape[:2])
    assert image_size(path) == shown.shape[:2]
    # JPEG is lossy: compare each pixel with a tolerance far below the colour differences
    error = np.abs(image.permute(1, 2, 0).numpy().astype(int) - shown.astype(int))
    assert np.median(error) < 8 and np.percentile(error, 90) < 40


@pytest.mark.parametrize("orientation", [3, 6])
def test_pairs_drawn_as_displayed_pass_and_align(tmp_path: Path, orientation: int):
    root = tmp_path / "phone"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.json").write_text(json.dumps(["background", "red", "blue"]))
    stored = _quadrants()
    _save_oriented(root / "images" / "a.jpg", stored, orientation)
    shown = DISPLAYED[orientation](stored).astype(int)
    labels = np.zeros(shown.shape[:2], np.uint8)  # the mask a user draws on what they see
    labels[np.abs(shown - RED).sum(-1) < 30] = 1
    labels[np.abs(shown - BLUE).sum(-1) < 30] = 2
    save_palette_png(labels, voc_colormap(), root / "masks" / "a.png")
    data = build_dataset("folder", root, None)
    image, mask = data[0]
    assert image.shape[-2:] == mask.shape
    red = torch.tensor(RED).view(3, 1, 1)
    assert (image.int() - red).abs().sum(0)[mask == 1].float().mean() < 30  # labels on pixels
    report = check_dataset(build_dataset("folder", root, None, strict=False), progress=False)
    assert report.ok, report.format()


def test_mask_with_exif_orientation_is_turned_like_its_image(tmp_path: Path):
    labels = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(labels).save(tmp_path / "m.png", exif=exif)
    assert read_mask(tmp_path / "m.png").tolist() == np.rot90(labels, k=-1).tolist()


def test_boxes_are_checked_against_the_displayed_size(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "classes.json").write_text(json.dumps(["background", "thing"]))
    _save_oriented(tmp_path / "images" / "a.jpg", _quadrants(), 6)  # displays 16 wide, 32 high
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [[0, 0, 16, 32, "thing"]]}))
    assert check_annotation_files(tmp_path, None, boxes=boxes).ok
    boxes.write_text(json.dumps({"a": [[0, 0, 32, 16, "thing"]]}))  # the stored orientation
    assert "leaves the 16x32 image" in check_annotation_files(tmp_path, None, boxes=boxes).format()


def test_predict_reads_paths_through_read_image(tmp_path: Path):
    from atrous.inference.predictor import to_image_tensor

    _save_oriented(tmp_path / "p.jpg", _quadrants(), 6)
    assert tuple(to_image_tensor(tmp_path / "p.jpg").shape) == (3, 32, 16)


@pytest.mark.parametrize("limit", [100, 500])  # Pillow's error (over 2x) and its warning (1-2x)
def test_decompression_bomb_is_one_data_error(tmp_path: Path, monkeypatch, limit: int):
    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)  # 600 pixels
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "huge_mask.png")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no DecompressionBombWarning on the way
        for read, target in ((read_image, path), (read_mask, tmp_path / "huge_mask.png")):
            with pytest.raises(DataError) as caught:
                read(target)
            message = str(caught.value)
            assert message.startswith(f"{target}: ") and "\n" not in message
            assert "600 pixels" in message and f"MAX_IMAGE_PIXELS = {limit}" in message
        with pytest.raises(DataError, match="decompression-bomb limit"):
            image_size(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 600)
    assert read_image(path).shape == (3, 20, 30)  # at the limit: read


def _folder(tmp_path: Path) -> Path:
    return make_synthetic_dataset(tmp_path / "d", num_train=3, num_val=1, size_range=(20, 24))


def test_data_check_lists_a_bomb_and_a_corrupt_image_and_reads_the_rest(
    tmp_path: Path, monkeypatch
):
    root = _folder(tmp_path)
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(root / "images" / "train_0000.jpg")
    (root / "images" / "train_0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # 60x60 is over, 20-24 px not
    report = check_dataset(build_dataset("folder", root, "train", strict=False), progress=False)
    assert report.num_images == 3 and len(report.errors) == 2 and not report.ok
    assert "train_0000.jpg: image of 3,600 pixels is over" in report.errors[0]
    assert "train_0001.jpg: unreadable image" in report.errors[1]
    assert sum(report.pixel_counts) + report.ignored_pixels > 0  # the good pair was counted


def test_unreadable_files_are_one_line_naming_them(tmp_path: Path):
    truncated = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(
        truncated
    )
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path, match in (
        (truncated, "cut.png: unreadable image"),
        (tmp_path / "absent.jpg", "absent.jpg: image not found"),
    ):
        with pytest.raises(DataError, match=match):
            read_image(path)
    (tmp_path / "rgb.png").write_bytes((tmp_path / "cut.png").read_bytes())
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="rgb.png: mask has mode 'RGB'"):
        read_mask(tmp_path / "rgb.png")
    for content, match in ((b"\xff\xfe{", "can't decode"), (b"{oops", "Expecting")):
        (tmp_path / "x.json").write_bytes(content)
        with pytest.raises(DataError, match=f"x.json: cannot read boxes .*{match}"):
            read_json(tmp_path / "x.json", "boxes")
    with pytest.raises(DataError, match="nope.json: boxes not found"):
        read_json(tmp_path / "nope.json", "boxes")


def test_folder_side_files_are_checked(tmp_path: Path):
    root = _folder(tmp_path)
    spec = json.loads((root / "classes.json").read_text())
    (root / "classes.json").write_text(json.dumps({**spec, "palette": [[0, 0, "red"]]}))
    with pytest.raises(DataError, match=r"classes.json: palette must be a list of \[R, G, B\]"):
        build_dataset("folder", root, "train")
    (root / "classes.json").write_bytes(b"\x89PNG binary")
    with pytest.raises(DataError, match="classes.json: cannot read class list"):
        build_dataset("folder", root, "train")
    (root / "classes.json").write_text(json.dumps(spec))
    (root / "train.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="train.txt: unreadable split file"):
        build_dataset("folder", root, "train")


def test_a_pil_image_with_exif_orientation_is_taken_as_displayed(tmp_path: Path):
    from atrous.inference import to_image_tensor

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a portrait phone photo stored landscape
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif)
    with Image.open(path) as opened:
        assert to_image_tensor(opened).shape == (3, 40, 20)
