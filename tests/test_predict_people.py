"""``atrous predict`` for PersonLab (#30): a picture of the people (masks, skeletons, scores)
and their COCO results JSON beside each image's mask and overlay, planned up front and listed
in the manifest like every other output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

import atrous.inference.writer as writer_module
from atrous.errors import ConfigError
from atrous.inference import MANIFEST, Predictor, plan_outputs, predict_to_files
from atrous.inference.outputs import output_files
from atrous.inference.people import draw_people, people_json, save_people
from atrous.models import build_model

H, W = 60, 80


def _person(score: float = 0.9) -> dict:
    """A standing figure in the left half: a box mask round the body, the arms outside it."""
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[15:55, 14:27] = True
    xs = [20, 18, 22, 16, 24, 14, 26, 13, 27, 12, 28, 16, 24, 16, 24, 16, 24]
    ys = [18, 17, 17, 18, 18, 24, 24, 31, 31, 37, 37, 38, 38, 45, 45, 52, 52]
    scores = [0.9] * 17
    scores[4] = 0.01  # right ear: a guess, not drawn
    points = torch.tensor([xs, ys, scores], dtype=torch.float32).T
    return {"keypoints": points, "score": score, "mask": mask}


def test_draw_people_marks_the_person_and_nothing_far_from_it():
    image = np.full((H, W, 3), 100, np.uint8)
    person = _person()
    drawn = draw_people(image, [person])
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    changed = (drawn.astype(int) != image).any(-1)
    points = person["keypoints"].numpy()
    for x, y, s in points:
        if s >= 0.05:
            assert changed[int(y), int(x)], (x, y)
    mask = person["mask"].numpy()
    assert changed[mask].all()  # tinted, outlined, drawn over
    near = np.zeros_like(mask)
    near[0:60, 2:40] = True  # the mask, a few pixels round it, and the score above it
    assert not changed[~near].any()
    # Left and right differ in shade: the left wrist's dot is lighter than the right's.
    assert drawn[37, 12].sum() > drawn[37, 28].sum()
    # Below the minimum person score nothing is drawn; no people, the image unchanged.
    assert (draw_people(image, [_person(score=0.01)]) == image).all()
    assert (draw_people(image, []) == image).all()


def test_people_json_round_trips_masks_and_keypoints():
    people = [_person(0.9), _person(0.3)]
    people[1]["mask"] = torch.zeros(H, W, dtype=torch.bool)  # an empty mask is fine too
    body = people_json(people, "photo.jpg", (H, W))
    assert body["image"] == "photo.jpg" and (body["height"], body["width"]) == (H, W)
    first, second = body["people"]
    assert json.loads(json.dumps(body)) == body  # plain JSON: counts are text
    assert isinstance(first["segmentation"]["counts"], str)
    rle = {**first["segmentation"], "counts": first["segmentation"]["counts"].encode()}
    assert (mask_utils.decode(rle).astype(bool) == people[0]["mask"].numpy()).all()
    assert first["bbox"] == [14.0, 15.0, 13.0, 40.0]
    assert len(first["keypoints"]) == 51 and first["category_id"] == 1
    keypoints = np.array(first["keypoints"]).reshape(17, 3)
    assert np.allclose(keypoints, people[0]["keypoints"].numpy(), atol=1e-5)
    assert first["score"] == pytest.approx(0.9) and second["score"] == pytest.approx(0.3)
    assert second["bbox"] == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"photo.jpg: person 0's mask is \[60, 80\]"):
        people_json(people, "photo.jpg", (W, H))


def test_save_people_writes_the_picture_and_the_json(tmp_path: Path):
    image = np.full((H, W, 3), 100, np.uint8)
    jpg, path = save_people([_person()], image, tmp_path / "out", "x", image_name="x.png")
    assert (jpg.name, path.name) == ("x_people.jpg", "x_people.json")
    assert Image.open(jpg).size == (W, H)
    assert json.loads(path.read_text())["image"] == "x.png"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    model = build_model(
        "personlab", backbone="mobilenetv2", width_mult=0.25, channels=32, radius=8.0
    )
    return Predictor(model.eval())


def _image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_writes_people_files_listed_in_the_manifest(predictor, tmp_path: Path):
    paths = [_image(tmp_path / "in" / "a.png", 1), _image(tmp_path / "in" / "b.png", 2)]
    out = tmp_path / "out"
    written = predict_to_files(predictor, paths, out, progress=False)
    assert len(written) == 2 and not written.failed
    names = {"a.png", "a_overlay.jpg", "a_people.jpg", "a_people.json"}
    names |= {n.replace("a", "b", 1) for n in names}
    assert {p.name for p in out.iterdir()} == names | {MANIFEST}
    assert set(json.loads((out / MANIFEST).read_text())["files"]) == names
    body = json.loads((out / "b_people.json").read_text())
    assert (body["image"], body["height"], body["width"]) == ("b.png", 24, 32)
    assert Image.open(out / "a_people.jpg").size == (32, 24)
    # A second run into the same folder replaces its own files (the manifest owns them) ...
    assert len(predict_to_files(predictor, paths, out, progress=False)) == 2
    # ... but a foreign file with one of the people names is refused before any work.
    (out / "a_people.json").unlink()
    (out / "a_people.json").write_text("{}")
    before = (out / "a.png").stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"a_people\.json: exists and is not a prediction"):
        predict_to_files(predictor, paths, out, progress=False)
    assert (out / "a.png").stat().st_mtime_ns == before


def test_people_names_are_planned_and_decoded_people_are_written(
    predictor, tmp_path: Path, monkeypatch
):
    assert output_files("x", people=True)[-2:] == ["x_people.jpg", "x_people.json"]
    foreign = tmp_path / "out" / "x_people.jpg"
    foreign.parent.mkdir()
    foreign.write_bytes(b"mine")
    photo = _image(tmp_path / "in" / "x.png", 3)
    plan_outputs([photo], tmp_path / "out")  # without people the name is free
    with pytest.raises(ConfigError, match="x_people.jpg"):
        plan_outputs([photo], tmp_path / "out", people=True)
    # An untrained model finds nobody; a decoder that finds someone gets them written.
    seen = {}

    def decode(fields, *, radius):
        seen["radius"], seen["shape"] = radius, tuple(fields["heatmap"].shape)
        person = _person()
        person["mask"] = person["mask"][:24, :32]
        return [person]

    monkeypatch.setattr(writer_module, "decode", decode)
    predict_to_files(predictor, [photo], tmp_path / "out2", progress=False)
    assert seen == {"radius": 8.0, "shape": (17, 24, 32)}
    (person,) = json.loads((tmp_path / "out2" / "x_people.json").read_text())["people"]
    assert person["score"] == pytest.approx(0.9) and len(person["keypoints"]) == 51
