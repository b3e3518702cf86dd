"""Nothing lost, nothing silent (#28): predictions never replace a file they did not write, get
one name per image, finish the good images of a batch, and fall back to sliding windows when a
whole-image forward would not fit in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import atrous.inference.predictor as predictor_module
from atrous import Predictor
from atrous.errors import ConfigError, DataError
from atrous.inference import (
    MANIFEST,
    WindowNotice,
    check_output_dir,
    check_output_file,
    find_images,
    plan_outputs,
    predict_to_files,
)
from atrous.models import deeplabv3plus


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(deeplabv3plus(num_classes=4, width_mult=0.25, channels=16))


def _image(path: Path, value: int = 120, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def test_out_folder_that_holds_the_inputs_is_refused_before_any_work(predictor, tmp_path: Path):
    photo = _image(tmp_path / "photos" / "photo.png")
    before = photo.read_bytes()
    with pytest.raises(ConfigError, match=r"folder of the input image .*photo\.png.*another --out"):
        predict_to_files(predictor, find_images([photo.parent]), photo.parent, progress=False)
    assert photo.read_bytes() == before
    assert sorted(p.name for p in photo.parent.iterdir()) == ["photo.png"]  # nothing written


def test_a_file_atrous_did_not_write_is_never_replaced(predictor, tmp_path: Path):
    photo = _image(tmp_path / "in" / "x.jpg")
    out = tmp_path / "out"
    mine = _image(out / "x.png", value=7)  # someone's own x.png in the output folder
    with pytest.raises(ConfigError, match=rf"{mine}: exists and is not a prediction"):
        predict_to_files(predictor, [photo], out, progress=False)
    assert not (out / "x_overlay.jpg").exists() and not (out / MANIFEST).exists()
    mine.unlink()
    # A re-run into the same folder replaces its own files, listed in the manifest.
    assert len(predict_to_files(predictor, [photo], out, progress=False)) == 1
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert sorted(listed) == ["x.png", "x_overlay.jpg"]
    assert len(predict_to_files(predictor, [photo], out, progress=False)) == 1
    # ... but not one changed since (a user's edit), nor anything else.
    _image(out / "x.png", value=9, size=(5, 5))
    with pytest.raises(ConfigError, match="changed since"):
        predict_to_files(predictor, [photo], out, progress=False)


def test_same_stems_get_their_own_files_and_the_count_is_the_files(predictor, tmp_path: Path):
    paths = [
        _image(tmp_path / "dupA" / "x.jpg", 10),
        _image(tmp_path / "dupA" / "x.png", 100),
        _image(tmp_path / "dupB" / "x.jpg", 200),
        _image(tmp_path / "dupB" / "y.jpg", 50),
    ]
    written = predict_to_files(predictor, find_images(paths), tmp_path / "out", progress=False)
    masks = [mask.name for mask, _ in written]
    assert masks == ["dupA_x_jpg.png", "dupA_x_png.png", "dupB_x_jpg.png", "y.png"]
    files = {p.name for p in (tmp_path / "out").iterdir()} - {MANIFEST}
    assert len(files) == 2 * len(written) == 8
    # x.jpg and x.png in one folder: the suffix tells them apart.
    assert plan_outputs(paths[:2], tmp_path / "out2") == ["x_jpg", "x_png"]
    # A stem that would clash with another image's file name gets a counter.
    assert plan_outputs(
        [tmp_path / "a" / "q_jpg.png", tmp_path / "b" / "q.jpg", tmp_path / "b" / "q.png"],
        tmp_path / "out3",
    ) == ["q_jpg", "q_jpg_2", "q_png"]
    assert len(find_images([paths[0], paths[0].parent])) == 2  # each file once


def test_output_paths_under_a_file_are_refused_up_front(tmp_path: Path):
    blocker = tmp_path / "report.txt"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output_dir(blocker)
    with pytest.raises(ConfigError, match="report.txt is a file"):
        check_output_dir(blocker / "sub" / "dir")
    with pytest.raises(ConfigError, match="report.txt is a file"):
        check_output_file(blocker / "eval.json")
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(ConfigError, match="not a file this command wrote"):
        check_output_file(blocker, replaceable=lambda p: False)
    assert check_output_file(tmp_path / "new" / "eval.json") == tmp_path / "new" / "eval.json"


def test_bad_images_are_listed_and_the_good_ones_written(predictor, tmp_path: Path, monkeypatch):
    folder = tmp_path / "in"
    good = _image(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    _image(folder / "bomb.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 40x40 > 2 x 500: a "bomb"
    written = predict_to_files(predictor, find_images([folder]), tmp_path / "out", progress=False)
    assert [m.name for m, _ in written] == ["good.png"]
    failed = dict(written.failed)
    assert set(failed) == {folder / "bomb.png", folder / "broken.jpg", folder / "empty.png"}
    assert "decompression" in failed[folder / "bomb.png"]
    assert all(not reason.startswith(str(folder)) for reason in failed.values())
    assert good.exists()


def test_out_of_memory_and_nan_scores_are_per_image_failures(predictor, tmp_path, monkeypatch):
    paths = [_image(tmp_path / "in" / "a.png"), _image(tmp_path / "in" / "b.png")]
    real = Predictor.predict
    calls = []

    def flaky(self, image, *, finite=False):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                               "allocate memory: you tried to allocate 9 GB")  # fmt: skip
        return real(self, image, finite=finite)

    monkeypatch.setattr(Predictor, "predict", flaky)
    written = predict_to_files(predictor, paths, tmp_path / "out", progress=False)
    assert len(written) == 1 and "out of memory" in written.failed[0][1]
    assert "--crop 513" in written.failed[0][1]
    monkeypatch.setattr(Predictor, "predict", real)
    nan_model = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16)
    with torch.no_grad():
        next(p for n, p in nan_model.named_parameters() if n.endswith("weight")).fill_(float("nan"))
    written = predict_to_files(Predictor(nan_model), paths, tmp_path / "nan", progress=False)
    assert len(written) == 0 and all("NaN" in reason for _, reason in written.failed)


def test_an_image_over_the_memory_budget_runs_in_sliding_windows(predictor, tmp_path, monkeypatch):
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    whole = predictor.predict(image)
    # A budget a 90x120 whole-image forward exceeds but 513-pixel windows fit.
    monkeypatch.setattr(predictor_module, "memory_budget", lambda device: 1_000_000_000)
    monkeypatch.setattr(predictor_module, "forward_bytes", lambda *a: 2_000_000_000)
    with pytest.warns(WindowNotice, match=r"120x90 image needs about .* 513x513 sliding windows"):
        windowed = predictor.predict(image)
    assert windowed.shape == whole.shape == (90, 120)
    path = _image(tmp_path / "in" / "big.png", size=(90, 120))
    written = predict_to_files(predictor, [path], tmp_path / "out", progress=False)
    assert len(written) == 1 and "sliding windows" in written.notices[0][1]
    monkeypatch.setattr(predictor_module, "window_bytes", lambda *a, **k: 3_000_000_000)
    with pytest.raises(DataError, match="even in 513-pixel windows"):
        predictor.predict(image)
    assert predictor.with_options(crop=64).window_for((1, 3, 90, 120)) is None  # --crop given
