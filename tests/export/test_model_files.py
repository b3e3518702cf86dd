"""Every command that reads a model reads every file atrous writes (checkpoint, ONNX,
TorchScript, pt2), and a file of another kind is named for what it is."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.errors import CheckpointError
from atrous.export import file_kind
from atrous.loader import load


@pytest.fixture(scope="module")
def exports(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny checkpoint as TorchScript, pt2 and (with onnxruntime) ONNX, via the CLI."""
    out = tmp_path_factory.mktemp("exports")
    files = {"checkpoint": tiny_checkpoint}
    formats = [("torchscript", "model.pt"), ("pt2", "model.pt2")]
    try:
        import onnxruntime  # noqa: F401

        formats.append(("onnx", "model.onnx"))
    except ImportError:
        pass
    for fmt, name in formats:
        args = ["export", "--checkpoint", str(tiny_checkpoint), "--format", fmt]
        args += ["--height", "48", "--width", "48", "--out", str(out / name)]
        if fmt == "onnx":  # the legacy exporter: fast; the dynamo one has its own tests
            args += ["--dynamic", "--exporter", "legacy"]
        assert main(args) == 0
        files[fmt] = out / name
    return files


def test_file_kind_tells_the_formats_apart(exports: dict[str, Path]):
    for kind, path in exports.items():
        assert file_kind(path) == kind
        renamed = path.with_name(f"no_suffix_{kind}")  # content decides, not the name
        renamed.write_bytes(path.read_bytes())
        assert file_kind(renamed) == kind
        assert load(renamed).kind == kind


@pytest.mark.parametrize("kind", ["onnx", "torchscript", "pt2"])
def test_eval_and_predict_run_exported_files_like_the_checkpoint(
    exports: dict[str, Path], kind: str, tiny_data: Path, tmp_path: Path, capsys
):
    if kind not in exports:
        pytest.skip("onnxruntime is not installed")
    reports = {}
    for name in ("checkpoint", kind):
        out = tmp_path / f"{name}.json"
        args = ["eval", "--checkpoint", str(exports[name]), "--data", str(tiny_data)]
        assert main([*args, "--out", str(out), "--device", "cpu"]) == 0, capsys.readouterr().err
        reports[name] = json.loads(out.read_text())
    assert reports[kind]["miou"] == pytest.approx(reports["checkpoint"]["miou"], abs=1e-6)
    np.testing.assert_array_equal(
        reports[kind]["confusion_matrix"], reports["checkpoint"]["confusion_matrix"]
    )
    images = sorted((tiny_data / "images").glob("val_*.jpg"))
    masks = {}
    for name in ("checkpoint", kind):
        out = tmp_path / f"pred_{name}"
        args = ["predict", "--checkpoint", str(exports[name]), *map(str, images)]
        assert main([*args, "--out", str(out), "--device", "cpu"]) == 0
        masks[name] = [np.asarray(Image.open(out / f"{p.stem}.png")) for p in images]
    for exported, reference in zip(masks[kind], masks["checkpoint"], strict=True):
        np.testing.assert_array_equal(exported, reference)


def test_serve_loads_every_format_without_the_eager_fast_path(exports: dict[str, Path]):
    from atrous.serve import load_predictor

    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    reference = load_predictor(str(exports["checkpoint"])).predict(image)
    for kind, path in exports.items():
        predictor = load_predictor(str(path))
        assert predictor.options.fast == (kind == "checkpoint")
        agree = (predictor.predict(image) == reference).float().mean().item()
        assert agree > 0.99, kind  # the checkpoint runs bf16 here, exports in fp32


def _foreign_files(tmp_path: Path) -> dict[str, str]:
    png = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(png)
    jpg = tmp_path / "photo.pt"  # a JPEG under a checkpoint's name
    Image.new("RGB", (4, 4)).save(jpg, format="JPEG")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "recipe.pt").write_text("model:\n  name: deeplabv3plus\n")
    return {
        str(png): "x.png is a PNG image, not a model",
        str(jpg): "photo.pt is a JPEG image, not a model",
        str(tmp_path / "empty.pt"): "empty.pt is an empty file (0 bytes), not a model",
        str(tmp_path / "recipe.pt"): "recipe.pt is a text file, not a model",
    }


def test_foreign_files_are_named_for_what_they_are(tiny_data: Path, tmp_path: Path, capsys):
    for path, message in _foreign_files(tmp_path).items():
        with pytest.raises(CheckpointError, match=re.escape(message)):
            load(path)
        args = ["eval", "--checkpoint", path, "--data", str(tiny_data), "--device", "cpu"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "corrupt" not in err and err.count("\n") == 1
        assert main(["predict", "--checkpoint", path, str(tmp_path), "--out", "o"]) == 2
        assert message in capsys.readouterr().err


def test_commands_that_need_the_checkpoint_say_so(
    exports: dict[str, Path], tiny_data: Path, tmp_path: Path, capsys
):
    args = ["export", "--checkpoint", str(exports["pt2"]), "--out", str(tmp_path / "m.pt")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.pt2 is a torch.export program" in err and "needs the atrous checkpoint" in err
    args = ["eval", "--checkpoint", str(exports["torchscript"]), "--data", str(tiny_data)]
    assert main([*args, "--output-stride", "8"]) == 2
    assert "--output-stride: " in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not a readable pt2"):
        broken = tmp_path / "broken.pt2"
        data = bytearray(exports["pt2"].read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64
        broken.write_bytes(bytes(data))
        load(broken)
