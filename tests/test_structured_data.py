"""The structured tasks' data (issue #33): the noisy words generator and the synthetic tags are
seeded and behave as built, the OCR letters and MIRFLICKR-25k readers read their layouts and
name the file and line of anything wrong; and the words demo runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from atrous.data.mirflickr import (
    MIRFLICKR_TAGS,
    THEMES,
    MIRFlickr,
    make_synthetic_tags,
    read_annotations,
)
from atrous.data.words import LEXICON, find_fonts, make_noisy_words, ocr_words, read_ocr_letters
from atrous.errors import DataError
from atrous.structured.words_demo import run_words_demo, words_report


def test_noisy_words_are_seeded_lexicon_words() -> None:
    a, b = make_noisy_words(20, seed=3), make_noisy_words(20, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = make_noisy_words(20, seed=4)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (20, 5, 16, 8) and a.images.min() >= 0 and a.images.max() <= 1
    assert all(a.text(i) in LEXICON for i in range(20))
    assert len(LEXICON) == len(set(LEXICON)) >= 300 and {len(w) for w in LEXICON} == {5}


def test_noisy_words_work_without_installed_fonts_and_noise_hides_letters() -> None:
    words = make_noisy_words(30, seed=0, fonts=())  # PIL's own default font only
    assert words.images.shape == (30, 5, 16, 8)
    # the same letter seen twice differs (noise), but less than two different letters on average
    flat = words.images.flatten(0, 1).flatten(1)
    labels = words.labels.flatten()
    dist = torch.cdist(flat, flat)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool)
    assert dist[same & off].min() > 0
    assert dist[same & off].mean() < dist[~same].mean()
    for path in find_fonts():
        assert Path(path).is_file()
    with pytest.raises(ValueError, match="words of one length"):
        make_noisy_words(2, lexicon=("abc", "abcd"))


def _ocr_line(i: int, letter: str, next_id: int, word: int, pos: int, pixel: str = "0") -> str:
    pixels = [pixel] * 128
    return "\t".join([str(i), letter, str(next_id), str(word), str(pos), "3", *pixels])


def test_ocr_letters_reader_groups_words_and_names_bad_lines(tmp_path: Path) -> None:
    lines = [
        _ocr_line(1, "c", 2, 1, 1, "1"),
        _ocr_line(2, "a", 3, 1, 2),
        _ocr_line(3, "t", -1, 1, 3),
    ]
    lines += [_ocr_line(5, "o", 4, 2, 1), _ocr_line(4, "x", -1, 2, 2)]  # out of file order
    path = tmp_path / "letter.data"
    path.write_text("\n".join(lines) + "\n")
    data = read_ocr_letters(path)
    assert data.images.shape == (5, 16, 8) and data.images[0].eq(1).all()
    assert data.letters.tolist() == [2, 0, 19, 14, 23]
    words, folds = ocr_words(data, length=3)
    assert words.labels.tolist() == [[2, 0, 19]] and folds.tolist() == [3]
    two, _ = ocr_words(data, length=2)
    assert two.text(0) == "ox"
    bad = {
        "3: expected 134 tab-separated fields": _ocr_line(3, "t", -1, 1, 3)[:-2],
        "3: letter must be one of a-z, got 'T'": _ocr_line(3, "T", -1, 1, 3),
        "3: pixels must be 0 or 1": _ocr_line(3, "t", -1, 1, 3, "2"),
        "3: a field is not an integer": _ocr_line(3, "t", -1, 1, 3).replace("\t-1\t", "\tx\t"),
    }
    for message, line in bad.items():
        path.write_text("\n".join([*lines[:2], line]) + "\n")
        with pytest.raises(DataError, match=f"letter.data:{message}"):
            read_ocr_letters(path)
    with pytest.raises(DataError, match="no such file"):
        read_ocr_letters(tmp_path / "missing.data")


def _mirflickr(root: Path) -> Path:
    (root / "mirflickr").mkdir(parents=True)
    notes = root / "mirflickr25k_annotations_v080"
    notes.mkdir()
    for tag in MIRFLICKR_TAGS:
        (notes / f"{tag}.txt").write_text("")
    (notes / "sky.txt").write_text("1\n3\n15001\n")
    (notes / "clouds_r1.txt").write_text("3\n")
    Image.new("RGB", (6, 4), (10, 20, 30)).save(root / "mirflickr" / "im3.jpg")
    return root


def test_mirflickr_reads_tags_and_images_by_split(tmp_path: Path) -> None:
    root = _mirflickr(tmp_path)
    assert len(MIRFLICKR_TAGS) == 38 and sum(t.endswith("_r1") for t in MIRFLICKR_TAGS) == 14
    train, test = MIRFlickr(root, "train"), MIRFlickr(root, "test")
    assert len(train) == len(test) == 10_000
    image, tags = train[2]
    assert image.shape == (3, 4, 6) and image.dtype == torch.uint8
    on = {MIRFLICKR_TAGS[t] for t in tags.nonzero().flatten().tolist()}
    assert on == {"sky", "clouds_r1"}
    assert test.tags[0, MIRFLICKR_TAGS.index("sky")] == 1 and test.tags[1].sum() == 0
    with pytest.raises(DataError, match="im2.jpg: missing"):
        train[1]
    flipped, _ = MIRFlickr(root, "train", transforms=lambda im: im.flip(-1))[2]
    assert torch.equal(flipped, image.flip(-1))


def test_mirflickr_errors_name_the_file(tmp_path: Path) -> None:
    root = _mirflickr(tmp_path)
    notes = root / "mirflickr25k_annotations_v080"
    (notes / "dog.txt").write_text("12\nim13\n")
    with pytest.raises(DataError, match=r"dog.txt:2: expected an image number, got 'im13'"):
        read_annotations(notes)
    (notes / "dog.txt").write_text("25001\n")
    with pytest.raises(DataError, match=r"dog.txt:1: image number 25001 outside 1..25000"):
        read_annotations(notes)
    (notes / "dog.txt").unlink()
    with pytest.raises(DataError, match=r"dog.txt: missing"):
        MIRFlickr(root)
    with pytest.raises(DataError, match="split must be one of"):
        MIRFlickr(root, "val")
    with pytest.raises(DataError, match="mirflickr: no such folder"):
        MIRFlickr(tmp_path / "nowhere")


def test_synthetic_tags_are_seeded_and_co_occur_by_theme() -> None:
    a, b = make_synthetic_tags(300, seed=1), make_synthetic_tags(300, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.tags, b.tags)
    assert a.images.shape == (300, 3, 32, 32) and len(a.names) == a.tags.shape[1] == 12
    corr = torch.corrcoef(a.tags.T.float())
    together = {(i, j) for theme in THEMES for i in theme for j in theme if i != j}
    inside = torch.stack([corr[i, j] for i, j in together]).mean()
    apart = [corr[i, j] for i in range(12) for j in range(12) if i != j and (i, j) not in together]
    assert inside > 0.2 > torch.stack(apart).mean()


def test_words_demo_writes_its_metrics_and_table(tmp_path: Path) -> None:
    result = run_words_demo(
        tmp_path / "demo", steps=3, num_train=64, num_test=16, progress=False, device="cpu"
    )
    saved = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    for key in ("word_accuracy", "char_accuracy", "unary_word_accuracy", "unary_char_accuracy"):
        assert 0.0 <= saved[key] <= 1.0 and saved[key] == result["metrics"][key]
    assert saved["message_store_bytes"] == 64 * 4 * 2 * 26 * 4
    report = words_report(result, tmp_path / "demo")
    assert "unary only" in report and "blended" in report and "char acc" in report
