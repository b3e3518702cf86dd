"""Weak supervision by EM: the two E-step functions on hand-computed cases, box labels on a
hand-made image, annotation readers and their errors, and training from weak labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.config import load_config
from atrous.data import make_synthetic_dataset
from atrous.data.boxes import (
    bbox_rect,
    bbox_seg_unary,
    box_allowed,
    boxes_from_instances,
    check_annotations,
    read_boxes,
    read_image_labels,
)
from atrous.data.weak import ESTIMATE, WeakFolder
from atrous.errors import DataError
from atrous.tasks.em import bbox_seg, em_adapt_bias, em_fixed_bias, estimate_labels
from atrous.training import train
from tests.conftest import train_killed_after_first_checkpoint


def test_em_fixed_image_labels_by_hand():
    logits = torch.tensor([[[[0.0]], [[1.5]], [[0.8]], [[9.0]]]])  # 4 classes, one pixel
    present = torch.tensor([[True, False, True, False]])  # background and class 2
    biased = em_fixed_bias(logits, present, bg_bias=1.0, fg_bias=2.0)
    assert biased.flatten().tolist() == pytest.approx([1.0, 1.5, 2.8, 9.0])  # absent: untouched
    # class 3 scores highest, but it is absent: the estimate is class 2 (2.8 > 1.0)
    assert estimate_labels(biased, present).item() == 2
    # with a smaller foreground bias background wins: 0.8 + 0.1 < 0 + 1
    assert estimate_labels(em_fixed_bias(logits, present, fg_bias=0.1), present).item() == 0
    with pytest.raises(ValueError, match=">= 0"):
        em_fixed_bias(logits, present, bg_bias=-1.0)


def test_em_fixed_with_boxes_uses_each_pixels_classes():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1] = 0.5  # class 1 slightly preferred everywhere
    allowed = torch.zeros(1, 3, 1, 2, dtype=torch.bool)
    allowed[0, 0] = True
    allowed[0, 1, 0, 0] = True  # a class-1 box covers the left pixel only
    estimate = estimate_labels(em_fixed_bias(logits, allowed), allowed)
    assert estimate.tolist() == [[[1, 0]]]  # outside every box: background


def test_em_adapt_suppresses_others_and_reaches_the_portions():
    # 10 pixels; class 1 present, class 2 absent and strong
    logits = torch.zeros(1, 3, 1, 10)
    logits[0, 0] = torch.linspace(1.0, 2.0, 10)  # background
    logits[0, 1] = torch.linspace(0.0, 0.9, 10)
    logits[0, 2] = 5.0
    present = torch.tensor([[True, True, False]])
    out = em_adapt_bias(logits, present, bg_portion=0.2, fg_portion=0.5, margin=1e-5)
    # absent class 2 is capped just under the present classes' minimum at every pixel
    floor = torch.minimum(logits[0, 0], logits[0, 1])[0]
    shift = out[0, 0, 0] - logits[0, 0, 0]  # background needs no bias here: only the final shift
    assert torch.allclose(out[0, 2, 0] - shift, floor - 1e-5, atol=1e-6)
    labels = estimate_labels(out, present)[0, 0]
    assert (labels == 1).sum() >= 5 and (labels == 2).sum() == 0  # fg_portion 0.5 of the pixels
    # without suppression the absent class keeps its score (it is still never assigned)
    kept = em_adapt_bias(logits, present, suppress_others=False)
    assert kept[0, 2].sub(kept[0, 0] - logits[0, 0]).allclose(logits[0, 2])
    # ties: gaps of 0 are enough, the bias added is the nth smallest gap
    flat = torch.zeros(1, 2, 1, 4)
    tied = em_adapt_bias(flat, torch.tensor([[True, True]]), bg_portion=0.5, fg_portion=0.5)
    assert torch.equal(tied, flat)  # every gap is 0: nothing moves, the mean max is unchanged


def test_box_labels_on_a_hand_made_image():
    boxes = [(0, 0, 20, 20, 1), (5, 5, 9, 9, 2)]  # the smaller box is pasted over the larger
    rect = bbox_rect(boxes, 24, 24)
    assert rect[6, 6] == 2 and rect[1, 1] == 1 and rect[22, 22] == 0
    unary = bbox_seg_unary(boxes, 24, 24, 3)
    assert unary[1, 10, 10] == pytest.approx(0.75)  # the eroded core of the 20 x 20 box
    assert unary[1, 1, 1] == pytest.approx(0.5) and unary[0, 23, 23] == 1.0
    assert unary[2, 6, 6] == pytest.approx(0.5)  # a 4 x 4 box has no core (under 121 px)
    np.testing.assert_allclose(unary.sum(0), 1.0)
    allowed = box_allowed(boxes, 24, 24, 3)
    assert allowed[:, 6, 6].tolist() == [True, True, True] and allowed[:, 22, 22].tolist() == [
        True,
        False,
        False,
    ]
    image = torch.full((3, 24, 24), 40, dtype=torch.uint8)
    image[:, :20, :20] = 200  # the object is bright: the CRF keeps the box's class on it
    seg = bbox_seg(image, [(0, 0, 20, 20, 1)], 3)
    assert seg.shape == (24, 24) and seg[10, 10] == 1 and seg[22, 22] == 0


def test_annotation_readers_and_checks(tmp_path: Path):
    classes = ("background", "cat", "dog")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"a": ["cat", 2], "b": ["dog"]}))
    assert read_image_labels(labels, classes) == {"a": [1, 2], "b": [2]}
    labels.write_text(json.dumps({"a": ["cow"]}))
    with pytest.raises(DataError, match="unknown class 'cow'"):
        read_image_labels(labels, classes)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [[1, 2, 5, 6, "dog"]]}))
    assert read_boxes(boxes, classes) == {"a": [(1, 2, 5, 6, 2)]}
    voc = tmp_path / "Annotations"
    voc.mkdir()
    (voc / "c.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>3</xmin><ymin>4</ymin>"
        "<xmax>10</xmax><ymax>12</ymax></bndbox></object></annotation>"
    )
    assert read_boxes(voc, classes) == {"c": [(2, 3, 10, 12, 1)]}  # VOC corners are 1-based
    problems = check_annotations(
        ["a", "b"], {"a": (8, 8), "b": (8, 8)},
        boxes={"a": [(1, 1, 1, 5, 1), (0, 0, 9, 4, 2)], "z": [(0, 0, 1, 1, 1)]},
    )  # fmt: skip
    assert problems == [
        "annotations: 'z' is annotated but is not an image of the split",
        "annotations: 'b' has no annotation",
        "annotations: 'a' box [1, 1, 1, 5] (class 1) is empty",
        "annotations: 'a' box [0, 0, 9, 4] (class 2) leaves the 8x8 image",
    ]


@pytest.fixture(scope="module")
def weak_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("weak"), num_train=8, num_val=3,
                                  size_range=(48, 72), seed=1, panoptic=True)  # fmt: skip
    boxes, labels = {}, {}
    for stem in (root / "train.txt").read_text().split():
        semantic = np.array(Image.open(root / "masks" / f"{stem}.png"))
        instance = np.array(Image.open(root / "instances" / f"{stem}.png"))
        found = boxes_from_instances(semantic, instance)
        boxes[stem] = [list(b) for b in found]
        labels[stem] = sorted({b[4] for b in found})
    (root / "boxes.json").write_text(json.dumps(boxes))
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def test_weak_items_carry_labels_and_allowed_classes(weak_data: Path):
    data = WeakFolder(weak_data, "train", supervision="image_labels", method="em_fixed",
                      image_labels=weak_data / "labels.json")  # fmt: skip
    image, mask = data[0]
    assert mask.shape == (2, *image.shape[-2:]) and (mask[0] == ESTIMATE).all()
    labels = json.loads((weak_data / "labels.json").read_text())[data.stems[0]]
    assert mask[1, 0, 0].item() == sum(1 << c for c in {0, *labels})
    boxes = weak_data / "boxes.json"
    mixed = WeakFolder(weak_data, "train", supervision="mixed", method="em_fixed", boxes=boxes,
                       strong_fraction=0.5, strong_repeat=3)  # fmt: skip
    assert 0 < len(mixed.strong) < 8 and len(mixed) == 8 + 2 * len(mixed.strong)
    with pytest.raises(DataError, match="needs boxes"):
        WeakFolder(weak_data, "train", supervision="image_labels", method="rect",
                   image_labels=weak_data / "labels.json")  # fmt: skip


def _weak_config(root: Path, out: Path, *extra: str):
    return load_config(None, [
        f"data.root={root}", "data.crop_size=48", "data.num_workers=0", "model.width_mult=0.25",
        "model.channels=16", "train.batch_size=2", "train.lr=0.02", f"train.out_dir={out}",
        "data.supervision=mixed", f"data.boxes={root / 'boxes.json'}", "data.strong_fraction=0.3",
        "weak.method=em_fixed", *extra,
    ])  # fmt: skip


def test_mixed_supervision_trains_and_saves_estimates(weak_data: Path, tmp_path: Path):
    cfg = _weak_config(weak_data, tmp_path, "train.steps=40", "train.checkpoint_every=20",
                       "train.save_estimates=2")  # fmt: skip
    result = train(cfg, progress=False)
    losses = result["losses"]
    assert sum(losses[-10:]) < sum(losses[:10])
    for step in ("000020", "000040"):
        written = sorted((tmp_path / "estimates" / f"step_{step}").iterdir())
        assert len(written) == 2
        with Image.open(written[0]) as png:
            assert png.mode == "P" and set(np.unique(np.array(png))) <= {0, 1, 2, 3, 4}


def test_resume_is_exact_with_weak_supervision(weak_data: Path, tmp_path: Path, monkeypatch):
    common = ("train.steps=4", "train.checkpoint_every=2", "data.val_split=null")
    straight = train(_weak_config(weak_data, tmp_path / "a", *common), progress=False)
    cfg = _weak_config(weak_data, tmp_path / "b", *common)
    train_killed_after_first_checkpoint(cfg, monkeypatch)
    resumed = train(cfg, resume=True, progress=False)
    assert resumed["losses"] == straight["losses"][2:]


def test_data_check_reports_annotation_problems(weak_data: Path, tmp_path: Path, capsys):
    from atrous.cli import main

    assert main(["data", "check", "--root", str(weak_data), "--split", "train",
                 "--boxes", str(weak_data / "boxes.json")]) == 0  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train_0000": [[0, 0, 500, 10, "disc"]], "nope": []}))
    assert main(["data", "check", "--root", str(weak_data), "--split", "train",
                 "--boxes", str(bad)]) == 1  # fmt: skip
    out = capsys.readouterr().out
    assert "'nope' is annotated but is not an image of the split" in out
    assert "'train_0000' box [0, 0, 500, 10] (class 1) leaves the" in out
    assert "'train_0001' has no annotation" in out


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[[0, 0, 4, 4, 1]]", "top level is a list; expected an object"),
        ('{"a": [["x", 0, 4, 4, 1]]}', r"\[a\] box 0: x0 'x' is not a number"),
        ('{"a": [[0, NaN, 4, 4, 1]]}', r"\[a\] box 0: y0 is nan; a box corner must be a finite"),
        ('{"a": [[0, 0, Infinity, 4, 1]]}', r"\[a\] box 0: x1 is inf"),
        ('{"a": [[0, 0, 4, null, 1]]}', r"\[a\] box 0: y1 None is not a number"),
        ('{"a": [[0, 0, 4, 4]]}', r"\[a\]: box 0 is \[0, 0, 4, 4\]; a box is"),
        ('{"a": {"x0": 0}}', r"\[a\]: expected a list of \[x0, y0, x1, y1, class\]"),
        ("{oops", "cannot read boxes"),
    ],
)
def test_bad_boxes_json_is_one_error_naming_file_image_and_box(
    tmp_path: Path, content: str, match: str
):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(content)
    with pytest.raises(DataError, match=match) as caught:
        read_boxes(boxes, ("background", "cat"))
    assert str(caught.value).startswith(str(boxes)) and "\n" not in str(caught.value)


def test_bad_image_labels_json(tmp_path: Path):
    labels = tmp_path / "labels.json"
    for content, match in (
        ('[["cat"]]', "labels.json: top level is a list; expected an object"),
        ('{"a": "cat"}', r"\[a\]: expected a list of class names or ids, got 'cat'"),
        (b"\xff\xfe", "labels.json: cannot read image labels"),
    ):
        labels.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(DataError, match=match):
            read_image_labels(labels, ("background", "cat"))


@pytest.mark.parametrize(
    ("bndbox", "match"),
    [
        ("<xmin>3</xmin><ymin>four</ymin><xmax>9</xmax><ymax>9</ymax>", "ymin 'four' is not a"),
        ("<xmin>3</xmin><ymin>nan</ymin><xmax>9</xmax><ymax>9</ymax>", "ymin is 'nan'; a box"),
        ("<xmin>3</xmin><ymin>4</ymin><xmax>9</xmax>", "bndbox has no ymax"),
    ],
)
def test_bad_voc_xml_is_one_error_naming_the_object(tmp_path: Path, bndbox: str, match: str):
    voc = tmp_path / "Annotations"
    voc.mkdir()
    (voc / "c.xml").write_text(
        f"<annotation><object><name>cat</name><bndbox>{bndbox}</bndbox></object></annotation>"
    )
    with pytest.raises(DataError, match=rf"c.xml object 0 \('cat'\): {match}"):
        read_boxes(voc, ("background", "cat"))
    (voc / "c.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match="c.xml: unreadable annotation"):
        read_boxes(voc, ("background", "cat"))
    (voc / "c.xml").unlink()
    with pytest.raises(DataError, match=r"Annotations: no \*.xml annotations"):
        read_boxes(voc, ("background", "cat"))


def test_data_check_lists_corrupt_images_and_checks_the_rest(tmp_path: Path):
    from atrous.data.check import check_annotation_files

    root = tmp_path / "w"
    (root / "images").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(["background", "cat"]))
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{stem}.png")
    (root / "images" / "c.jpg").write_bytes(b"\xff\xd8 truncated")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [[0, 0, 4, 4, 1]], "b": [[0, 0, 9, 4, 1]], "c": []}))
    report = check_annotation_files(root, None, boxes=boxes)
    assert not report.ok and report.images == 3
    assert report.problems[0].startswith(f"{root / 'images' / 'c.jpg'}: unreadable image")
    assert "'b' box [0, 0, 9, 4] (class 1) leaves the 8x8 image" in report.problems[1]
    assert len(report.problems) == 2
    for path in (root / "images").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"images: no .jpg or .png images"):
        check_annotation_files(root, None, boxes=boxes)
    (root / "images").rmdir()
    with pytest.raises(DataError, match=r"images: no images/ folder"):
        check_annotation_files(root, None, boxes=boxes)
    with pytest.raises(DataError, match=r"images: no images/ folder"):
        WeakFolder(root, None, supervision="boxes", method="rect", boxes=boxes)


def test_strong_mask_values_are_checked_not_ignored(weak_data: Path, tmp_path: Path):
    import shutil

    root = tmp_path / "w"
    shutil.copytree(weak_data, root)
    data = WeakFolder(root, "train", supervision="mixed", method="em_fixed",
                      boxes=root / "boxes.json", strong_fraction=1.0)  # fmt: skip
    stem = data.stems[0]
    mask = np.array(Image.open(root / "masks" / f"{stem}.png"))
    mask[0, 0] = 9  # not a class of the 5
    Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    with pytest.raises(DataError, match=rf"{stem}.png: label values 9 are outside \[0, 5\)"):
        data.load(0)
