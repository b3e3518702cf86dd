"""Question-answering data: the COCO-QA, VQA and DAQUAR readers on tiny fake downloads (items
and errors naming the file and line), and the shape-QA set's answers checked against the
masks by independent measurements (pixel colour, fill ratio, connected components, centroid)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from atrous.data import DATASETS, build_dataset, make_shape_qa, question_type
from atrous.data.synthetic_qa import COUNTS, QA_COLOURS, SEGMENTATION_CLASSES
from atrous.errors import DataError


def _jpg(path: Path, size: tuple[int, int] = (20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(path)


def _coco_qa(root: Path, types: str = "0\n2\n") -> Path:
    (root / "train").mkdir(parents=True)
    files = {"questions": "what is on the table ?\nwhat colour is the car ?\n",
             "answers": "cat\nred\n", "img_ids": "9\n12\n", "types": types}  # fmt: skip
    for name, text in files.items():
        (root / "train" / f"{name}.txt").write_text(text)
    _jpg(root / "train2014" / "COCO_train2014_000000000009.jpg")
    _jpg(root / "val2014" / "COCO_val2014_000000000012.jpg")
    return root


def test_coco_qa_reads_the_download(tmp_path: Path) -> None:
    data = build_dataset("coco_qa", _coco_qa(tmp_path), "train")
    assert len(data) == 2 and data.types == ["object", "colour"]
    image, target = data[1]
    assert image.shape == (3, 16, 20)
    assert target == {"question": "what colour is the car ?", "answer": "red",
                      "type": "colour", "image_id": 12}  # fmt: skip
    assert data.samples[1][0].name == "COCO_val2014_000000000012.jpg"


def test_coco_qa_errors_name_the_file_and_line(tmp_path: Path) -> None:
    root = _coco_qa(tmp_path / "a", types="0\nseven\n")
    with pytest.raises(DataError, match=r"line 2: .*'seven'"):
        build_dataset("coco_qa", root, "train")
    root = _coco_qa(tmp_path / "b", types="0\n2\n3\n")
    with pytest.raises(DataError, match=r"one line per question: .*types.txt 3"):
        build_dataset("coco_qa", root, "train")
    root = _coco_qa(tmp_path / "c", types="0\n9\n")
    with pytest.raises(DataError, match=r"types.txt:2: type 9"):
        build_dataset("coco_qa", root, "train")
    with pytest.raises(DataError, match=r"test[/\\]questions.txt: not found"):
        build_dataset("coco_qa", root, "test")


def _vqa(root: Path, answers: bool = True) -> Path:
    (root / "Questions").mkdir(parents=True)
    (root / "Annotations").mkdir()
    questions = {"questions": [{"question_id": 5, "image_id": 42, "question": "is it red?"}]}
    humans = [{"answer": "yes", "answer_id": i} for i in range(7)]
    humans += [{"answer": "no", "answer_id": 7 + i} for i in range(3)]
    note = {"question_id": 5, "image_id": 42, "answer_type": "yes/no",
            "multiple_choice_answer": "yes", "answers": humans}  # fmt: skip
    if not answers:
        del note["answers"]
    (root / "Questions" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps(questions)
    )
    (root / "Annotations" / "v2_mscoco_val2014_annotations.json").write_text(
        json.dumps({"annotations": [note]})
    )
    _jpg(root / "val2014" / "COCO_val2014_000000000042.jpg")
    return root


def test_vqa_reads_questions_annotations_and_images(tmp_path: Path) -> None:
    data = build_dataset("vqa", _vqa(tmp_path), "val")
    image, target = data[0]
    assert image.shape == (3, 16, 20)
    assert target["answer"] == "yes" and target["type"] == "yes/no"
    assert target["answers"] == ["yes"] * 7 + ["no"] * 3


def test_vqa_errors_name_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no 'answers'"):
        build_dataset("vqa", _vqa(tmp_path / "a", answers=False), "val")
    root = _vqa(tmp_path / "b")
    (root / "Annotations" / "v2_mscoco_val2014_annotations.json").write_text("{not json")
    with pytest.raises(DataError, match=r"annotations.json: cannot read VQA annotations"):
        build_dataset("vqa", root, "val")
    with pytest.raises(DataError, match=r"VQA questions not found; looked for .*train2014"):
        build_dataset("vqa", root, "train")


def _daquar(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qa.894.raw.train.txt").write_text(text)
    _jpg(root / "nyu_depth_images" / "image7.png")
    return root


def test_daquar_reads_question_answer_pairs(tmp_path: Path) -> None:
    text = ("what is on the left side of the bed in the image7 ?\nlamp\n"
            "how many chairs are in the image7 ?\n2\n")  # fmt: skip
    data = build_dataset("daquar", _daquar(tmp_path, text), "train")
    assert len(data) == 2 and data.answers == ["lamp", "2"]
    assert data.types == ["object", "number"]
    image, target = data[1]
    assert target["image_id"] == 7 and image.shape == (3, 16, 20)


def test_daquar_errors_name_the_file_and_line(tmp_path: Path) -> None:
    root = _daquar(tmp_path / "a", "what is this ?\nlamp\n")
    with pytest.raises(DataError, match=r"qa.894.raw.train.txt:1: the question does not end"):
        build_dataset("daquar", root, "train")
    root = _daquar(tmp_path / "b", "what is in the image7 ?\nlamp\nwhat is in the image7 ?\n")
    with pytest.raises(DataError, match=r"3 non-empty lines"):
        build_dataset("daquar", root, "train")


def test_registered_and_question_types() -> None:
    assert {"coco_qa", "vqa", "daquar"} <= set(DATASETS)
    assert question_type("How many cats are there ?") == "number"
    assert question_type("what color is the bus ?") == "colour"
    assert question_type("where is the dog ?") == "location"
    assert question_type("what is on the sofa ?") == "object"


def _pieces(mask: np.ndarray) -> int:
    """8-connected components (objects are drawn 2 px apart at least)."""
    return ndimage.label(mask, structure=np.ones((3, 3)))[1]


def _shape_of(mask: np.ndarray) -> str:
    """Fill ratio of the mask's bounding box: square ~1, disc ~pi/4, triangle <= 1/2."""
    ys, xs = np.nonzero(mask)
    ratio = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    return "square" if ratio > 0.88 else "disc" if ratio > 0.66 else "triangle"


def _colour_of(image: np.ndarray, mask: np.ndarray) -> str:
    mean = image[mask].mean(axis=0)
    return min(QA_COLOURS, key=lambda c: np.abs(QA_COLOURS[c] - mean).sum())


def test_shape_qa_answers_agree_with_the_masks() -> None:
    data = make_shape_qa(60, seed=3)
    assert set(data.types) == {"object", "colour", "count", "location"}
    for index in range(len(data)):
        image, t = data[index]
        picture, mask = image.permute(1, 2, 0).numpy(), t["mask"].numpy()
        if t["type"] == "count":
            assert COUNTS.index(t["answer"]) == _pieces(mask), t["question"]
            continue
        assert _pieces(mask) == 1
        if t["type"] == "object":
            assert _shape_of(mask) == t["answer"], t["question"]
            assert _colour_of(picture, mask) in t["question"]
        elif t["type"] == "colour":
            assert _colour_of(picture, mask) == t["answer"]
            assert _shape_of(mask) in t["question"]
        else:
            ys, xs = np.nonzero(mask)
            side = mask.shape[0] / 2
            where = f"{'top' if ys.mean() < side else 'bottom'} "
            where += "left" if xs.mean() < side else "right"
            assert where == t["answer"], t["question"]
    again = make_shape_qa(60, seed=3)
    assert again.questions == data.questions and (again.images == data.images).all()


def test_shape_qa_segmentation_labels_name_each_objects_shape_and_colour() -> None:
    data = make_shape_qa(40, seed=4)
    labels = data.segmentation_labels()
    assert labels.shape == (40, 64, 64) and labels.dtype == torch.int64
    checked = 0
    for index in range(len(data)):
        image, t = data[index]
        if t["type"] not in ("object", "colour"):
            continue
        mask = t["mask"].numpy()
        colour = _colour_of(image.permute(1, 2, 0).numpy(), mask)  # read from the picture
        name = f"{colour} {_shape_of(mask)}"
        values = labels[t["image_id"]][t["mask"]].unique().tolist()
        assert values == [SEGMENTATION_CLASSES.index(name)], (t["question"], values)
        checked += 1
    assert checked > 40
    areas = [sum(int(o.mask.sum()) for o in objects) for objects in data.objects]
    assert (labels > 0).sum(dim=(1, 2)).tolist() == areas  # the rest is background
