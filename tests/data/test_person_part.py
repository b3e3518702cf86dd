"""PASCAL-Part .mat and Person-Part PNG readers: merged labels, instance ids, every bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat
from torchvision import tv_tensors

from atrous.data import (
    DATASETS,
    PART_GROUPS,
    SIZE_BUCKETS,
    PascalPartSegmentation,
    PersonPartPNG,
    build_dataset,
    object_size_buckets,
    object_sizes,
    size_bucket,
)
from atrous.data.palette import save_palette_png
from atrous.data.person_part import component_ids, part_target, read_pascal_part
from atrous.errors import DataError

H, W = 8, 10


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def _structs(rows: list[dict], fields: tuple[str, ...]) -> np.ndarray:
    """A MATLAB struct array as PASCAL-Part stores it: 1xN, or 0x0 when empty."""
    array = np.zeros((1, len(rows)) if rows else (0, 0), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f in fields:
            array[0, i][f] = row[f]
    return array


def _write_mat(path: Path, objects: list) -> Path:
    """``objects``: ``(class, mask, [(part name, mask), ...])``."""
    rows = [
        {
            "class": cls,
            "class_ind": np.array([[15]]),
            "mask": mask.astype(np.uint8),
            "parts": _structs(
                [{"part_name": n, "mask": m.astype(np.uint8)} for n, m in parts],
                ("part_name", "mask"),
            ),
        }
        for cls, mask, parts in objects
    ]
    objs = _structs(rows, ("class", "class_ind", "mask", "parts"))
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"anno": {"imname": path.stem, "objects": objs}})
    return path


def _write_image(folder: Path, image_id: str, size=(H, W)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(folder / f"{image_id}.jpg")


# One person: a head block with eye and hair on it, torso + neck, both upper arms, a hand, legs.
PERSON = (
    "person",
    _box(0, 8, 2, 9),
    [
        ("head", _box(0, 2, 4, 7)),
        ("leye", _box(1, 2, 4, 5)),
        ("hair", _box(0, 1, 4, 7)),
        ("neck", _box(2, 3, 5, 6)),
        ("torso", _box(3, 5, 4, 7)),
        ("luarm", _box(3, 4, 3, 4)),
        ("ruarm", _box(3, 4, 7, 8)),
        ("rhand", _box(4, 5, 8, 9)),
        ("ruleg", _box(5, 7, 4, 5)),
        ("lfoot", _box(7, 8, 6, 7)),
    ],
)
EXPECTED = np.array(
    [
        [0, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 2, 0, 0, 0, 0],
        [0, 0, 0, 3, 2, 2, 2, 3, 0, 0],
        [0, 0, 0, 0, 2, 2, 2, 0, 4, 0],
        [0, 0, 0, 0, 5, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 5, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 6, 0, 0, 0],
    ]
)
"""The merge by hand: head, eye, hair -> 1; neck, torso -> 2; luarm, ruarm -> 3; rhand -> 4;
ruleg -> 5; lfoot -> 6; the rest of the person's mask (columns 2-8) unparsed -> 0."""


@pytest.fixture
def mat_root(tmp_path: Path) -> Path:
    """PASCAL-Part layout: one person (a), two people and a horse (b), a lone cat (c)."""
    notes, images = tmp_path / "Annotations_Part", tmp_path / "VOC2010" / "JPEGImages"
    second = ("person", _box(0, 3, 0, 3), [("head", _box(0, 1, 0, 2)), ("llarm", _box(2, 3, 0, 1))])
    horse = (
        "horse",
        _box(4, 8, 0, 4),
        [("muzzle", _box(4, 5, 0, 1)), ("lfho", _box(7, 8, 0, 1)), ("rbuleg", _box(6, 7, 3, 4))],
    )
    _write_mat(notes / "a.mat", [PERSON])
    _write_mat(notes / "b.mat", [second, horse, PERSON])
    _write_mat(notes / "c.mat", [("cat", _box(0, 2, 0, 2), [])])
    for i in "abc":
        _write_image(images, i)
    for name in ("person_part", "horse_part", "cow_part"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.txt").write_text("a\nb\n")
        (tmp_path / name / "val.txt").write_text("c\n")
    return tmp_path


def test_written_mat_is_shaped_like_the_real_files(mat_root: Path):
    anno = loadmat(mat_root / "Annotations_Part" / "b.mat")["anno"]
    assert anno.shape == (1, 1)  # the real files, as loadmat gives them by default
    objects = anno[0, 0]["objects"]
    assert objects.shape == (1, 3) and objects[0, 0]["class"][0] == "person"
    assert objects[0, 0]["parts"].shape == (1, 2) and objects[0, 0]["mask"].dtype == np.uint8
    lone = loadmat(mat_root / "Annotations_Part" / "c.mat")["anno"][0, 0]["objects"]
    assert lone.shape == (1, 1) and lone[0, 0]["parts"].shape == (0, 0)
    assert read_pascal_part(mat_root / "Annotations_Part" / "c.mat")[0][0] == "cat"


def test_one_person_merged_by_hand(mat_root: Path):
    data = build_dataset("person_part", mat_root, "train")
    assert isinstance(data, PascalPartSegmentation) and len(data) == 2
    assert data.classes[1:] == (
        "head",
        "torso",
        "upper arms",
        "lower arms",
        "upper legs",
        "lower legs",
    )
    image, target = data[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, H, W)
    assert isinstance(target, tv_tensors.Mask) and target.dtype == torch.int64
    assert target.shape == (3, H, W)
    assert np.array_equal(target[0].numpy(), EXPECTED)
    assert np.array_equal(target[1].numpy(), PERSON[1].astype(np.int64))  # the whole person
    parts = target[2].numpy()
    assert np.array_equal(parts > 0, EXPECTED > 0)
    for where in (np.equal(EXPECTED, label) for label in range(1, 7)):  # both upper arms: 1 id
        assert len(np.unique(parts[where])) == 1
    assert len(np.unique(parts[parts > 0])) == 6


def test_several_objects_other_classes_and_overlap(mat_root: Path):
    _, target = PascalPartSegmentation(mat_root, "train")[1]
    labels, objects, parts = target.numpy()
    # the second person (file order 1) is partly covered by the full person drawn after it
    assert set(np.unique(objects).tolist()) == {0, 1, 2}
    assert np.array_equal(objects == 2, PERSON[1] > 0)
    assert labels[0, 0] == 1 and objects[0, 0] == 1 and labels[0, 2] == 0 and objects[0, 2] == 2
    assert labels[2, 0] == 4 and objects[5:, 0].tolist() == [0, 0, 0]  # the horse is skipped
    for i in np.unique(parts[parts > 0]):  # each part id: one object, one part class
        assert len(np.unique(objects[parts == i])) == 1 and len(np.unique(labels[parts == i])) == 1
    pairs = np.unique(np.stack([objects, labels])[:, parts > 0], axis=1)
    assert pairs.shape[1] == len(np.unique(parts[parts > 0]))  # one id per (object, part class)


def test_horse_parts(mat_root: Path):
    data = build_dataset("horse_part", mat_root, "train")
    assert data.classes == ("background", "head", "body", "leg", "tail")
    labels, objects, parts = data[1][1].numpy()
    assert labels[4, 0] == 1 and labels[7, 0] == 3 and labels[6, 3] == 3  # muzzle, hoof, leg
    assert objects.max() == 1 and objects[4:8, 0:4].all() and not objects[:4].any()
    assert len(np.unique(parts[labels == 3])) == 1
    assert PART_GROUPS["cow"]["lhorn"] == 1 and "lhorn" not in PART_GROUPS["horse"]
    cow = DATASETS["cow_part"](mat_root, "val")
    assert cow.object_class == "cow" and len(cow) == 1 and not cow[0][1].any()  # only a cat


def test_object_without_parts_and_unparsed(mat_root: Path):
    for unparsed, value in (("background", 0), ("ignore", 255)):
        objects = [("person", _box(0, 2, 0, 2), []), PERSON]
        target = part_target(objects, "person", (H, W), "x.mat", unparsed=unparsed)
        assert (target[0, :2, :2] == value).all() and (target[1, :2, :2] == 1).all()
        assert (target[2, :2, :2] == 0).all() and target[0, 2, 2] == value  # inside PERSON
    with pytest.raises(DataError, match="unparsed='bogus'"):
        PascalPartSegmentation(mat_root, "train", unparsed="bogus")


def test_unknown_part_error_or_ignore(mat_root: Path):
    tail = ("person", _box(0, 2, 0, 2), [("tail", _box(0, 1, 0, 1))])
    _write_mat(mat_root / "Annotations_Part" / "a.mat", [tail])
    with pytest.raises(DataError, match=r"a\.mat.*unknown person part 'tail'"):
        PascalPartSegmentation(mat_root, "train").load(0)
    _, target = PascalPartSegmentation(mat_root, "train", unknown_parts="ignore")[0]
    assert target[0, 0, 0] == 255 and target[1, 0, 0] == 1 and target[2, 0, 0] == 0


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (b"not a mat file at all", r"unreadable \.mat file"),
        ({"other": 1}, "no 'anno' struct"),
        ({"anno": {"imname": "a"}}, "anno has no field 'objects'"),
        ({"anno": {"objects": {"class": "person", "mask": np.ones((H, W))}}}, "no field 'parts'"),
        ({"anno": {"objects": {"class": "person", "mask": np.ones(3), "parts": []}}}, "not a 2-D"),
    ],
)
def test_bad_mat_names_the_file(mat_root: Path, contents, message: str):
    path = mat_root / "Annotations_Part" / "a.mat"
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        savemat(path, contents)
    with pytest.raises(DataError, match=rf"a\.mat: .*{message}"):
        PascalPartSegmentation(mat_root, "train")[0]


def test_mask_size_differs(mat_root: Path):
    big = np.ones((H + 1, W), np.uint8)
    _write_mat(mat_root / "Annotations_Part" / "a.mat", [("person", big, [])])
    with pytest.raises(DataError, match=r"a\.mat: object 1 \(person\) mask size \(9, 10\)"):
        PascalPartSegmentation(mat_root, "train")[0]
    _write_mat(mat_root / "Annotations_Part" / "a.mat", [("person", big[:H], [("head", big)])])
    with pytest.raises(DataError, match=r"a\.mat: object 1 \(person\) part 'head' mask size"):
        PascalPartSegmentation(mat_root, "train")[0]


def test_missing_files(mat_root: Path):
    (mat_root / "VOC2010" / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"train\.txt: 1 listed images not found .*'b'"):
        PascalPartSegmentation(mat_root, "train")
    _write_image(mat_root / "VOC2010" / "JPEGImages", "b")
    (mat_root / "Annotations_Part" / "b.mat").unlink()
    with pytest.raises(DataError, match=r"b\.mat: annotation not found"):
        PascalPartSegmentation(mat_root, "train")
    data = PascalPartSegmentation(mat_root, "train", strict=False)
    assert len(data) == 1 and "b.mat" in data.missing[0]
    with pytest.raises(DataError, match=r"person_part.test\.txt: split file for split 'test'"):
        PascalPartSegmentation(mat_root, "test")


def test_image_folders(mat_root: Path):
    (mat_root / "VOC2010").rename(mat_root / "elsewhere")
    with pytest.raises(DataError, match="VOC2010/JPEGImages/ .*JPEGImages/"):
        PascalPartSegmentation(mat_root, "train")
    (mat_root / "elsewhere" / "JPEGImages").rename(mat_root / "JPEGImages")
    assert len(PascalPartSegmentation(mat_root, "val")) == 1


def test_no_data_names_both_layouts(tmp_path: Path):
    with pytest.raises(DataError, match="pascal_person_part_gt.*Annotations_Part"):
        build_dataset("person_part", tmp_path, "train")


# --- the PNG release -----------------------------------------------------------------------

PNG_LABELS = np.array(
    [
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [2, 2, 0, 0, 0, 0, 1, 0, 0, 0],
        [3, 2, 3, 0, 0, 0, 0, 2, 0, 0],
        [0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 255],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 6, 6],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
)
"""Three objects under 8-connectivity: the left figure (two separate upper arms), the diagonal
pair (1,6)-(2,7), and the legs at the bottom right; 255 stays ignore and no object."""


@pytest.fixture
def png_root(tmp_path: Path) -> Path:
    base = tmp_path / "pascal_person_part"
    (base / "pascal_person_part_gt").mkdir(parents=True)
    (base / "pascal_person_part_trainval_list").mkdir()
    save_palette_png(PNG_LABELS, None, base / "pascal_person_part_gt" / "2008_000001.png")
    save_palette_png(np.zeros((H, W)), None, base / "pascal_person_part_gt" / "2008_000002.png")
    lists = base / "pascal_person_part_trainval_list"
    (lists / "train.txt").write_text(
        "/JPEGImages/2008_000001.jpg /SegmentationPart/2008_000001.png\n"
    )
    (lists / "val.txt").write_text("2008_000002\n")
    for i in ("2008_000001", "2008_000002"):
        _write_image(tmp_path / "VOCdevkit" / "VOC2010" / "JPEGImages", i)
    return tmp_path


def test_png_release_connected_components(png_root: Path):
    data = build_dataset("person_part", png_root, "train")
    assert isinstance(data, PersonPartPNG) and data.num_classes == 7
    labels, objects, parts = data[0][1].numpy()
    assert np.array_equal(labels, PNG_LABELS)
    assert set(np.unique(objects).tolist()) == {0, 1, 2, 3}
    assert len(np.unique(objects[:4, :3][PNG_LABELS[:4, :3] > 0])) == 1
    assert objects[1, 6] == objects[2, 7] != objects[0, 0]  # diagonal neighbours: one object
    assert objects[4, 9] == 0 and parts[4, 9] == 0
    assert parts[2, 0] != parts[2, 2] and labels[2, 0] == labels[2, 2] == 3  # two arm pieces
    assert parts[1, 0] == parts[1, 1] == parts[2, 1]  # one torso
    assert len(np.unique(parts[parts > 0])) == 8
    assert data[0][1][0].tolist() == PNG_LABELS.tolist()
    assert not build_dataset("person_part", png_root, "val")[0][1].any()


def test_component_ids_skip_255():
    labels = np.zeros((40, 40), np.int64)
    labels[::2, ::2] = 1  # 400 isolated pixels
    objects, parts = component_ids(labels)
    assert objects.max() == 401 and not (objects == 255).any()
    assert len(np.unique(parts[parts > 0])) == 400 and not (parts == 255).any()


def test_png_instances_used_when_present(png_root: Path):
    folder = png_root / "pascal_person_part" / "pascal_person_part_instances"
    folder.mkdir()
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[PNG_LABELS > 0, 0] = 7
    rgb[PNG_LABELS > 0, 1], rgb[PNG_LABELS > 0, 2] = 4, 1  # part id 4 + 256
    Image.fromarray(rgb).save(folder / "2008_000001.png")
    _, objects, parts = PersonPartPNG(png_root, "train")[0][1].numpy()
    assert set(np.unique(objects).tolist()) == {0, 7} and set(np.unique(parts).tolist()) == {0, 260}
    Image.fromarray(rgb[..., 0]).save(folder / "2008_000001.png")
    with pytest.raises(DataError, match=r"2008_000001\.png: mode L .*expected RGB"):
        PersonPartPNG(png_root, "train")[0]


def test_png_bad_label_and_size(png_root: Path):
    gt = png_root / "pascal_person_part" / "pascal_person_part_gt" / "2008_000001.png"
    save_palette_png(np.full((H, W), 9), None, gt)
    with pytest.raises(DataError, match=r"2008_000001\.png: label values 9 are outside \[0, 7\)"):
        PersonPartPNG(png_root, "train")[0]
    save_palette_png(np.zeros((H, W + 1)), None, gt)
    with pytest.raises(DataError, match=r"2008_000001\.png: size \(8, 11\) differs"):
        PersonPartPNG(png_root, "train")[0]
    gt.unlink()
    with pytest.raises(DataError, match=r"2008_000001\.png: annotation not found"):
        PersonPartPNG(png_root, "train")


# --- sizes ---------------------------------------------------------------------------------


def test_object_sizes_and_buckets():
    target = torch.zeros(3, 64, 64, dtype=torch.int64)
    target[1, :2, :2] = 1  # 4 px: XS (< 1/256 of 4096 = 16)
    target[1, 10:20, 10:20] = 2  # 100 px: M (64 <= 100 < 256)
    target[1, 30:, 30:] = 3  # 34 x 34 = 1156 px: XL (>= 1024)
    target[1, -1, :] = 255  # padding, not an object
    assert object_sizes(target) == {1: 4, 2: 100, 3: 1156 - 34}
    assert object_size_buckets(target) == {1: "XS", 2: "M", 3: "XL"}
    assert object_sizes(target[1].numpy()) == object_sizes(target)
    assert list(SIZE_BUCKETS) == ["XS", "S", "M", "L", "XL"]
    assert size_bucket(16, 4096) == "S" and size_bucket(1023, 4096) == "L"
