import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from atrous.cli import main
from atrous.metrics import ConfusionMatrix

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "atrous", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "eval", "predict", "demo"):
        assert f"    {command} " in out


def _recipe(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"data:\n  root: {data}\n  crop_size: 48\n  num_workers: 0\n"
        "model:\n  width_mult: 0.25\n  channels: 16\n"
        f"train:\n  steps: 2\n  batch_size: 2\n  out_dir: {tmp_path / 'run'}\n"
    )
    return path


def test_train_eval_predict(tiny_data: Path, tmp_path: Path, capsys):
    assert (
        main(
            [
                "train",
                "--config",
                str(_recipe(tmp_path, tiny_data)),
                "--set",
                "train.steps=3",
                "train.lr=0.01",
            ]
        )
        == 0
    )
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert checkpoint.is_file()

    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(tiny_data),
                "--out",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "disc" in printed and "mIoU" in printed
    report = json.loads((tmp_path / "eval.json").read_text())
    assert set(report) >= {"miou", "iou", "pixel_accuracy", "mean_accuracy", "fw_iou", "classes"}
    assert len(report["iou"]) == 5 and report["split"] == "val"

    out = tmp_path / "pred"
    images = sorted((tiny_data / "images").glob("val_*.jpg"))
    assert (
        main(["predict", "--checkpoint", str(checkpoint), *map(str, images), "--out", str(out)])
        == 0
    )
    for image in images:
        with Image.open(out / f"{image.stem}.png") as png, Image.open(image) as src:
            assert png.mode == "P" and png.size == src.size
        assert (out / f"{image.stem}_overlay.jpg").is_file()


def test_eval_numbers_match_a_direct_computation(
    tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path
):
    from atrous import Predictor

    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data",
                str(tiny_data),
                "--out",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    cm = ConfusionMatrix(5)
    for stem in (tiny_data / "val.txt").read_text().split():
        with Image.open(tiny_data / "masks" / f"{stem}.png") as png:
            target = np.array(png)
        cm.update(np.asarray(predictor.predict(tiny_data / "images" / f"{stem}.jpg")), target)
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["miou"] == cm.compute()["miou"]


def test_errors_are_one_line_with_exit_code_2(tiny_data: Path, tmp_path: Path, capsys):
    recipe = _recipe(tmp_path, tiny_data)
    assert main(["train", "--config", str(recipe), "--set", "train.lrate=1"]) == 2
    assert "unknown key 'train.lrate'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(tiny_data)]) == 2
    assert "nope.pt: checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--config", str(recipe), "--set", "data.root=/nowhere"]) == 2
    assert "no images/ folder" in capsys.readouterr().err
    assert main(["train", "--config", str(recipe), "--set", "model.backbone=resnet9"]) == 2
    assert "unknown backbone 'resnet9'" in capsys.readouterr().err


def test_demo_plumbing(tmp_path: Path, capsys):
    # The real demo trains for minutes; here two steps check that every output is written.
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "2"]) == 0
    assert "mIoU" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"miou", "iou", "pixel_accuracy", "mean_accuracy", "fw_iou"}
    assert (out / "checkpoint.pt").is_file()
    assert len(list((out / "predictions").glob("*_overlay.jpg"))) == 16
    with Image.open(out / "predictions.png") as grid:
        assert grid.width > 3 * 96 and grid.height > 8 * 96  # 8 rows of image | truth | pred
    assert (out / "data" / "train.txt").read_text().count("\n") == 300
    # a second demo into the same folder would replace the first run: refused at once
    assert main(["demo", "--out", str(out), "--steps", "2"]) == 2
    assert "holds an earlier run" in capsys.readouterr().err


def test_eval_protocol_options(tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path, capsys):
    out = tmp_path / "ms.json"
    args = [
        "eval",
        "--checkpoint",
        str(tiny_checkpoint),
        "--data",
        str(tiny_data),
        "--scales",
        "0.75",
        "1.0",
        "1.25",
        "--flip",
        "--output-stride",
        "8",
        "--trimap",
        "1",
        "3",
        "40",
        "--per-image",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trimap mIoU by band width: 1px" in printed and "worst images:" in printed
    report = json.loads(out.read_text())
    assert set(report["trimap"]) == {"1", "3", "40"}
    assert len(report["per_image"]) == 3
    ious = [r["miou"] for r in report["per_image"] if r["miou"] is not None]
    assert ious == sorted(ious)  # worst first
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == report["num_pixels"]
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data",
                str(tiny_data),
                "--crop",
                "32",
                "--stride",
                "16",
                "--out",
                str(tmp_path / "sw.json"),
            ]
        )
        == 0
    )


def test_data_check_without_split_files_scans_every_pair(tmp_path: Path, capsys):
    from atrous.data import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "d", num_train=3, num_val=2, size_range=(20, 24))
    for name in ("train.txt", "val.txt"):
        (root / name).unlink()
    assert main(["data", "check", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("5 image/mask pairs, 0 images without a mask") and "OK" in out
    (root / "masks" / "val_0001.png").unlink()
    assert main(["data", "check", "--root", str(root)]) == 1
    assert "4 image/mask pairs, 1 images without a mask" in capsys.readouterr().out


def test_predict_keeps_going_past_an_unreadable_image(
    tiny_checkpoint: Path, tmp_path: Path, capsys
):
    images = tmp_path / "in"
    images.mkdir()
    for name in ("a.jpg", "c.png"):
        Image.fromarray(np.full((20, 24, 3), 120, np.uint8)).save(images / name)
    (images / "b.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    out = tmp_path / "pred"
    assert (
        main(["predict", "--checkpoint", str(tiny_checkpoint), str(images), "--out", str(out)]) == 1
    )
    printed = capsys.readouterr()
    assert printed.out.strip() == f"wrote 2 masks and overlays to {out}"
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png",
        "a_overlay.jpg",
        "atrous_predictions.json",  # what the writer created, so a re-run may replace it
        "c.png",
        "c_overlay.jpg",
    ]
    report = printed.err[printed.err.index("atrous predict:") :].splitlines()  # after tqdm's bar
    assert report[0] == "atrous predict: 1 image(s) not read:"
    assert len(report) == 2 and report[1].startswith(f"  {images / 'b.jpg'}: unreadable image (")
