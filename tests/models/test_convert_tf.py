"""TF reference checkpoints -> atrous: small networks of each zoo variant family, built in
TensorFlow with the reference's ops and variable names (tests/tf_reference.py), saved as TF
checkpoints, converted, and compared output for output. Needs the extra ``atrous[tf]``."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from atrous.cli import main
from atrous.errors import CheckpointError
from atrous.inference import Predictor
from atrous.loader import load
from atrous.models import from_tf_checkpoint, from_weights
from atrous.models.heads.dpc import CITYSCAPES_CELL

tf = pytest.importorskip("tensorflow")
from tests import tf_reference as ref  # noqa: E402  (needs TensorFlow)

pytestmark = pytest.mark.tf

SIZE, CLASSES = 33, 5  # 33 = 2 * 16 + 1: an exact size for align_corners=True at OS16 and OS8
SMALL = 17  # MobileNetV2 runs at full width (the reference graph has no depth multiplier)


def _xception65(g: ref.Graph, x: Any, os: int = 16) -> Any:
    f, low = ref.xception(g, x, 65, width=0.125, output_stride=os)
    y = ref.aspp(g, f, rates=[6 * 16 // os, 12 * 16 // os, 18 * 16 // os], separable=True)
    return ref.decoder(g, y, low, separable=True)


def _xception71_dpc(g: ref.Graph, x: Any) -> Any:
    f, low = ref.xception(g, x, 71, width=0.125, output_stride=16)
    y = ref.dense_prediction_cell(g, f, CITYSCAPES_CELL, output_stride=16)
    return ref.decoder(g, y, low, separable=True)


def _xception41_os8(g: ref.Graph, x: Any) -> Any:
    f, _ = ref.xception(g, x, 41, width=0.125, output_stride=8)
    return ref.aspp(g, f, rates=[12, 24, 36], separable=True)


def _mobilenet(g: ref.Graph, x: Any) -> Any:  # the zoo's: image pooling + 1x1 branch only
    f, _ = ref.mobilenet_v2(g, x, output_stride=16)
    return ref.aspp(g, f, rates=[], separable=False)


def _mobilenet_decoder(g: ref.Graph, x: Any) -> Any:
    f, low = ref.mobilenet_v2(g, x, output_stride=16)
    return ref.decoder(g, ref.aspp(g, f, rates=[], separable=False), low, separable=True)


def _resnet101(g: ref.Graph, x: Any) -> Any:
    f, low = ref.resnet_v1_beta(g, x, 101, width=0.125, output_stride=16, multi_grid=(1, 2, 4))
    y = ref.aspp(g, f, rates=[6, 12, 18], separable=False)
    return ref.decoder(g, y, low, separable=False)


CASES: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "xception_65 + ASPP + decoder": (_xception65, "xception_65", {}),
    "xception_71 + DPC + decoder": (_xception71_dpc, "xception_71", {}),
    "xception_41 OS8, no decoder": (_xception41_os8, "xception_41", {"output_stride": 8}),
    "mobilenet_v2": (_mobilenet, "mobilenet_v2", {}),
    "mobilenet_v2 + decoder": (_mobilenet_decoder, "mobilenet_v2", {}),
    "resnet_v1_101_beta + decoder": (_resnet101, "resnet_v1_101_beta", {"multi_grid": (1, 2, 4)}),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Float64 depthwise convs run one small conv per channel: with several threads each waits
    on a barrier, minutes when the cores are shared; one thread takes milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _size(case: str) -> int:
    return SMALL if case.startswith("mobilenet") else SIZE


def _input(seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)


def _reference(
    case: str, tmp_path: Path, extra: dict[str, np.ndarray] | None = None, dtype: Any = None
):
    """(TF logits NCHW, checkpoint prefix, the graph) for ``case``."""
    build, _, _ = CASES[case]
    g = ref.Graph(seed=1, dtype=dtype or tf.float32)
    size = _size(case)
    x = tf.constant(_input(size=size), dtype=g.dtype)
    out = ref.logits(g, build(g, x), CLASSES, [size, size])
    prefix = g.save(tmp_path / "model.ckpt", extra)
    return out.numpy().transpose(0, 3, 1, 2), prefix, g


def _run(model: torch.nn.Module, x: np.ndarray, dtype: torch.dtype = torch.float32) -> np.ndarray:
    with torch.no_grad():
        return model.to(dtype)(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dtype)).numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_converted_model_computes_what_the_tf_graph_computes(case: str, tmp_path: Path) -> None:
    """In float64 on both sides (the float32 checkpoint's values): any difference left is the
    conversion's. Every checkpoint variable fills exactly one atrous tensor, and all are filled."""
    expected, prefix, graph = _reference(case, tmp_path, dtype=tf.float64)
    _, variant, options = CASES[case]
    model = from_tf_checkpoint(prefix, variant=variant, num_classes=CLASSES, **options)
    state = model.state_dict()
    filled = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert filled == sum(v.size for v in graph.variables.values())
    got = _run(model, _input(size=_size(case)), torch.float64)
    assert got.shape == expected.shape
    assert 1.0 < float(np.abs(expected).max()) < 100.0  # O(1) logits: the tolerance means something
    assert float(np.abs(got - expected).max()) < 1e-4


def test_mobilenet_tf_same_padding_on_even_sizes(tmp_path: Path) -> None:
    """Strided 3x3 convs with TF "SAME" padding pad one more pixel bottom/right on even sizes."""
    g = ref.Graph(seed=2, dtype=tf.float64)
    x = _input(size=32)
    features, _ = ref.mobilenet_v2(g, tf.constant(x, dtype=tf.float64), output_stride=16)
    out = ref.aspp(g, features, rates=[], separable=False)
    ref.logits(g, out, CLASSES, [32, 32])
    prefix = g.save(tmp_path / "model.ckpt")
    model = from_tf_checkpoint(prefix, variant="mobilenetv2", num_classes=CLASSES)
    with torch.no_grad():
        inputs = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).double()
        got = model.double().backbone(inputs)["out"].numpy()
    expected = features.numpy().transpose(0, 3, 1, 2)
    assert got.shape == expected.shape == (1, 320, 2, 2)
    assert float(np.abs(got - expected).max()) < 1e-4


def test_optimizer_slots_are_skipped_and_a_directory_works(tmp_path: Path) -> None:
    slots = {
        "global_step": np.array(7, dtype=np.int64),
        "MobilenetV2/Conv/weights/Momentum": np.zeros((3, 3, 3, 32), np.float32),
        "logits/semantic/biases/ExponentialMovingAverage": np.zeros(CLASSES, np.float32),
    }
    expected, _, _ = _reference("mobilenet_v2", tmp_path, slots, dtype=tf.float64)
    model = from_tf_checkpoint(tmp_path, variant="mobilenet_v2", num_classes=CLASSES)
    got = _run(model, _input(size=SMALL), torch.float64)
    assert float(np.abs(got - expected).max()) < 1e-4


def test_an_unknown_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    extra = {"MobilenetV2/expanded_conv_3/squeeze_excite/weights": np.zeros(3, np.float32)}
    _, prefix, _ = _reference("mobilenet_v2", tmp_path, extra)
    with pytest.raises(CheckpointError, match="expanded_conv_3/squeeze_excite/weights"):
        from_tf_checkpoint(prefix, variant="mobilenet_v2", num_classes=CLASSES)


def test_a_missing_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    g = ref.Graph(seed=1)
    ref.logits(g, _mobilenet(g, tf.constant(_input(size=SMALL))), CLASSES, [SMALL, SMALL])
    del g.variables["MobilenetV2/expanded_conv_5/project/BatchNorm/gamma"]
    prefix = g.save(tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="expanded_conv_5/project/BatchNorm/gamma"):
        from_tf_checkpoint(prefix, variant="mobilenet_v2", num_classes=CLASSES)


def test_wrong_variant_classes_and_path_are_clear_errors(tmp_path: Path) -> None:
    _, prefix, _ = _reference("mobilenet_v2", tmp_path)
    with pytest.raises(CheckpointError, match="not a xception_65 checkpoint"):
        from_tf_checkpoint(prefix, variant="xception_65", num_classes=CLASSES)
    with pytest.raises(CheckpointError, match="predicts 5 classes, not num_classes=21"):
        from_tf_checkpoint(prefix, variant="mobilenet_v2", num_classes=21)
    with pytest.raises(CheckpointError, match="no TF checkpoint here"):
        from_tf_checkpoint(tmp_path / "nothing.ckpt", variant="mobilenet_v2", num_classes=5)


def _zoo_mobilenet(tmp_path: Path) -> tuple[np.ndarray, Path]:
    """A stand-in for the zoo's MobileNetV2 VOC tarball (its layout: <folder>/model.ckpt.*),
    and the TF graph's float64 logits."""
    g = ref.Graph(seed=3, dtype=tf.float64)
    x = tf.constant(_input(size=SMALL), dtype=tf.float64)
    expected = ref.logits(g, _mobilenet(g, x), 21, [SMALL, SMALL]).numpy().transpose(0, 3, 1, 2)
    (tmp_path / "zoo").mkdir()
    g.save(tmp_path / "zoo" / "model.ckpt")
    archive = tmp_path / "deeplabv3_mnv2_pascal_train_aug.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "zoo", arcname="deeplabv3_mnv2_pascal_train_aug")
    return expected, archive


def test_registry_converts_a_zoo_tarball_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected, archive = _zoo_mobilenet(tmp_path)
    name = "mobile_deeplabv3.tf_voc_trainaug"
    model = from_weights(name, weights_file_path=archive)
    assert float(np.abs(_run(model, _input(size=SMALL), torch.float64) - expected).max()) < 1e-4
    assert (tmp_path / "hub" / "atrous" / f"{name}.pt").is_file()
    archive.unlink()
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    again = from_weights(name)  # the converted cache, no download, no TF read
    assert float(np.abs(_run(again, _input(size=SMALL), torch.float64) - expected).max()) < 1e-4


def _no_download(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("downloaded again")


def test_convert_tf_command_writes_a_checkpoint_predict_reads(tmp_path: Path) -> None:
    expected, prefix, _ = _reference("xception_65 + ASPP + decoder", tmp_path, dtype=tf.float64)
    out = tmp_path / "model.pt"
    code = main(["convert-tf", "--checkpoint", str(prefix), "--variant", "xception65",
                 "--num-classes", str(CLASSES), "--out", str(out)])  # fmt: skip
    assert code == 0 and out.is_file()
    loaded = load(out)
    assert loaded.mean == loaded.std == (0.5, 0.5, 0.5)  # [-1, 1] inputs, as the reference
    assert loaded.info.classes == tuple(f"class_{i}" for i in range(CLASSES))
    image = ((_input()[0] + 1) * 127.5).round().astype(np.uint8)
    assert Predictor.from_loaded(loaded).predict(image).shape == (SIZE, SIZE)
    assert float(np.abs(_run(loaded.model, _input(), torch.float64) - expected).max()) < 1e-4
