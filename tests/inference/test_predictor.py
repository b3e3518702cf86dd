from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous import Predictor
from atrous.data import read_image
from atrous.inference import find_images, predict_to_files
from atrous.models import deeplabv3plus


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(deeplabv3plus(num_classes=4, width_mult=0.25, channels=16))


def test_every_input_form_gives_the_same_map_at_image_size(predictor, tmp_path: Path):
    array = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    from_array = predictor.predict(array)
    assert isinstance(from_array, torch.Tensor)  # every output is a CPU tensor
    assert from_array.shape == (37, 53) and from_array.dtype == torch.int64
    assert from_array.min() >= 0 and from_array.max() < 4
    np.testing.assert_array_equal(predictor.predict(path), from_array)
    np.testing.assert_array_equal(predictor.predict(str(path)), from_array)
    np.testing.assert_array_equal(predictor.predict(Image.fromarray(array)), from_array)
    np.testing.assert_array_equal(predictor.predict(read_image(path)), from_array)
    assert predictor.logits(array).shape == (4, 37, 53)


def test_argmax_of_the_model_output(predictor):
    array = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    mean, std = (
        torch.tensor(predictor.mean)[:, None, None],
        torch.tensor(predictor.std)[:, None, None],
    )
    with torch.no_grad():
        expected = predictor.model(((x - mean) / std)[None])[0].argmax(0).numpy()
    np.testing.assert_array_equal(predictor.predict(array), expected)


def test_bad_inputs(predictor, tmp_path: Path):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        predictor.predict(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        predictor.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="cannot read an image"):
        predictor.predict(42)
    with pytest.raises(ValueError, match="unreadable image"):
        (tmp_path / "bad.jpg").write_text("nope")
        predictor.predict(tmp_path / "bad.jpg")


def test_writes_palette_png_and_overlay(predictor, tmp_path: Path):
    images = tmp_path / "in"
    images.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.fromarray(np.full((20, 24, 3), 120, np.uint8)).save(images / name)
    written = predict_to_files(predictor, find_images([images]), tmp_path / "out", progress=False)
    assert [p.name for p, _ in written] == ["a.png", "b.png"]
    mask_path, overlay_path = written[0]
    with Image.open(mask_path) as png:
        assert png.mode == "P" and png.size == (24, 20)
        np.testing.assert_array_equal(np.array(png), predictor.predict(images / "a.png"))
    with Image.open(overlay_path) as jpg:
        assert jpg.format == "JPEG" and jpg.size == (24, 20)
    with pytest.raises(ValueError, match="no such image"):
        find_images([tmp_path / "missing.png"])


def test_comparison_grid_places_panels():
    from atrous.evaluation import comparison_grid

    image = np.full((10, 12, 3), 7, np.uint8)
    truth, pred = np.zeros((10, 12), np.int64), np.ones((10, 12), np.int64)
    small = (np.zeros((5, 6, 3), np.uint8), np.zeros((5, 6), np.int64), np.zeros((5, 6), np.int64))
    grid = comparison_grid([(image, truth, pred), small], gap=2)
    assert grid.shape == (10 + 2 + 5 + 2, 3 * 12 + 2 * 2, 3)
    assert (grid[:10, :12] == 7).all()
    assert tuple(grid[0, 2 * (12 + 2)]) == (128, 0, 0)  # prediction panel: class 1's colour
    assert (grid[12:17, 6:8] == 255).all()  # gap between the second row's panels


def test_predict_proba_sums_to_one_and_logits_agree(predictor):
    array = np.random.default_rng(2).integers(0, 256, (21, 26, 3), dtype=np.uint8)
    probs = predictor.predict_proba(array)
    assert probs.shape == (4, 21, 26) and probs.device.type == "cpu"
    torch.testing.assert_close(probs.sum(0), torch.ones(21, 26))
    torch.testing.assert_close(probs, predictor.logits(array).softmax(0))


def test_tta_and_sliding_options():
    torch.manual_seed(0)
    model = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    tta = Predictor(model, scales=(0.75, 1.0, 1.25), flip=True, crop=24, stride=16)
    array = np.random.default_rng(3).integers(0, 256, (30, 37, 3), dtype=np.uint8)
    probs = tta.predict_proba(array)
    assert probs.shape == (4, 30, 37)
    torch.testing.assert_close(probs.sum(0), torch.ones(30, 37))
    # With scales/flip, logits() is the log of the averaged probabilities.
    torch.testing.assert_close(tta.logits(array).exp(), probs)
    torch.testing.assert_close(tta.predict(array), probs.argmax(0))
    assert (tta.crop, tta.stride, tta.scales, tta.flip) == (
        (24, 24),
        (16, 16),
        (0.75, 1, 1.25),
        True,
    )


def test_predict_batch_matches_predict(predictor):
    rng = np.random.default_rng(4)
    images = [
        rng.integers(0, 256, shape, dtype=np.uint8)
        for shape in [(16, 20, 3), (24, 16, 3), (16, 20, 3), (16, 20, 3)]
    ]
    batch = predictor.predict_batch(images, batch_size=2)
    assert len(batch) == 4
    for image, labels in zip(images, batch, strict=True):
        assert labels.dtype == torch.int64
        torch.testing.assert_close(labels, predictor.predict(image))
    assert predictor.predict_batch([]) == []


def test_output_stride_option():
    model = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = Predictor(model, output_stride=8)
    assert predictor.model.output_stride == 8 and not predictor.model.training
    # The model passed in is not modified: it runs a copy at OS8, in eval mode.
    assert model.output_stride == 16 and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert predictor.predict(np.zeros((20, 20, 3), np.uint8)).shape == (20, 20)
    assert model.output_stride == 16 and model.training
    with pytest.raises(ValueError, match="set_output_stride"):
        Predictor(torch.nn.Conv2d(3, 4, 1), output_stride=8)
    with pytest.raises(ValueError, match="needs crop"):
        Predictor(model, stride=8)


def test_from_checkpoint_passes_options(tiny_checkpoint):
    plain = Predictor.from_checkpoint(tiny_checkpoint)
    assert plain.is_plain and plain.crop is None
    tuned = Predictor.from_checkpoint(
        tiny_checkpoint, scales=(0.5, 1.0), flip=True, output_stride=8, crop=32, stride=16
    )
    assert (tuned.scales, tuned.flip, tuned.crop, tuned.stride) == (
        (0.5, 1.0),
        True,
        (32, 32),
        (16, 16),
    )
    assert tuned.output_stride == 8 and tuned.model.output_stride == 8
    assert tuned.info is not None and tuned.mean == plain.mean
    array = np.random.default_rng(5).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    assert tuned.predict(array).shape == (20, 28)
