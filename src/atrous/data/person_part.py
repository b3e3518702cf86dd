"""PASCAL-Part for part parsing (HAZN, Xia et al. ECCV 2016): Person-Part, Horse-Part, Cow-Part.

Items are ``(tv_tensors.Image uint8 [3,H,W], tv_tensors.Mask int64 [3,H,W])``, the target's
channels: 0 part labels (0 background, 1..P merged parts, 255 ignore), 1 object instance ids
(0 none), 2 part instance ids (0 none; unique in the image, each in one object and one part
class). Ids run 1, 2, ... and skip 255, the value the train transforms pad every channel with.

``.mat`` layout (PASCAL-Part as downloaded, Chen et al. CVPR 2014)::

    root/Annotations_Part/<id>.mat       anno: objects(class, mask, parts(part_name, mask))
    root/VOC2010/JPEGImages/<id>.jpg     or root/VOCdevkit/VOC2010/JPEGImages/, root/JPEGImages/
    root/<class>_part/{train,val}.txt    image ids (root/person_part/train.txt, ...), or split_file=

Fine parts merge by :data:`PART_GROUPS`, one part instance per (object, merged part); other
classes' objects are skipped; later objects cover earlier ones; object pixels outside its parts
get ``unparsed`` (0 or 255). An unknown part name is a :class:`DataError` naming the file, or
255 with ``unknown_parts="ignore"``.

PNG layout (the Person-Part release of "attention to scale", Chen et al. CVPR 2016: 1,716
train / 1,817 val), read by ``person_part`` when present, images as above (.jpg or .png)::

    root/pascal_person_part/pascal_person_part_gt/<id>.png          part labels 0..6
    root/pascal_person_part/pascal_person_part_trainval_list/{train,val}.txt
    root/pascal_person_part/pascal_person_part_instances/<id>.png   optional, RGB: object id R,
                                                                    part id G + 256 B (exact)

A list line is an id, or paths whose first one's stem is the id. The release has no instances:
objects are then the 8-connected components of the part pixels and part instances those of each
part class, an approximation (touching people merge; two arms may be two instances).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.io import loadmat
from scipy.io.matlab import MatReadError, mat_struct
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..errors import DataError
from ._pairs import InfoDataset, check_labels, open_image, read_image, read_mask
from .info import IGNORE_INDEX, DatasetInfo
from .palette import voc_colormap

PART_CLASSES = {
    "person": ("head", "torso", "upper arms", "lower arms", "upper legs", "lower legs"),
    "horse": ("head", "body", "leg", "tail"),
    "cow": ("head", "body", "leg", "tail"),
}
"""The merged part classes of each object class, labels 1..P in this order."""

_HEAD = ("head", "leye", "reye", "lear", "rear")
_LEGS = tuple(f"{s}{e}" for s in ("lf", "rf", "lb", "rb") for e in ("uleg", "lleg"))
_PERSON = (
    (*_HEAD, "lebrow", "rebrow", "nose", "mouth", "hair"),
    ("torso", "neck"),
    ("luarm", "ruarm"),
    ("llarm", "rlarm", "lhand", "rhand"),
    ("luleg", "ruleg"),
    ("llleg", "rlleg", "lfoot", "rfoot"),
)
_HOOVES = ("lfho", "rfho", "lbho", "rbho")
_HORSE = ((*_HEAD, "muzzle"), ("torso", "neck"), (*_LEGS, *_HOOVES), ("tail",))
_COW = ((*_HEAD, "muzzle", "lhorn", "rhorn"), ("torso", "neck"), _LEGS, ("tail",))
# Recalled, unverified: the Person-Part merge (Chen et al. 2016) and the horse/cow groups of
# HAZN; the fine names are the PASCAL-Part release's.
PART_GROUPS: dict[str, dict[str, int]] = {
    cls: {name: label for label, names in enumerate(groups, 1) for name in names}
    for cls, groups in (("person", _PERSON), ("horse", _HORSE), ("cow", _COW))
}
"""Fine PASCAL-Part part name -> merged part label, per object class."""

_EDGES = (0.0, 1 / 256, 1 / 64, 1 / 16, 1 / 4, float("inf"))
SIZE_BUCKETS: dict[str, tuple[float, float]] = dict(
    zip(("XS", "S", "M", "L", "XL"), zip(_EDGES[:-1], _EDGES[1:], strict=True), strict=True)
)
"""Object size buckets, ``[low, high)`` of object area / image area: chosen (octaves of the
object's side relative to the image's side); HAZN reports XS..XL, its thresholds are unread."""

SPLITS = ("train", "val")
_PNG_ROOT, _PNG_GT = "pascal_person_part", "pascal_person_part_gt"
_PNG_LISTS, _PNG_INSTANCES = "pascal_person_part_trainval_list", "pascal_person_part_instances"
_IMAGE_DIRS = ("VOC2010/JPEGImages", "VOCdevkit/VOC2010/JPEGImages", "JPEGImages")
_MAT_ERRORS = (OSError, ValueError, TypeError, LookupError, MatReadError, zlib.error)
_EIGHT = np.ones((3, 3), dtype=bool)
_Transforms = Callable[..., Any] | None
PartObject = tuple[str, np.ndarray, list[tuple[str, np.ndarray]]]
"""``(class, bool mask, [(fine part name, bool mask), ...])``, from :func:`read_pascal_part`."""


# --- targets -------------------------------------------------------------------------------


def _compact(ids: np.ndarray) -> np.ndarray:
    """Ids renumbered 1, 2, ... in their order (0 stays 0), skipping 255 (the pad value)."""
    values = np.unique(ids[ids > 0])
    lut = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.int64)
    new = np.arange(1, values.size + 1)
    lut[values] = new + (new >= IGNORE_INDEX)
    return lut[ids]


def component_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object and part instance ids of an ``HxW`` part-label map: 8-connected components of the
    part pixels (not 0 or 255), and of each part class (which lie inside one object each)."""
    labels = np.asarray(labels)
    objects = ndimage.label((labels > 0) & (labels != IGNORE_INDEX), structure=_EIGHT)[0]
    parts, offset = np.zeros(labels.shape, dtype=np.int64), 0
    for c in set(np.unique(labels).tolist()) - {0, IGNORE_INDEX}:
        found, count = ndimage.label(labels == c, structure=_EIGHT)
        parts[found > 0] = found[found > 0] + offset
        offset += count
    return _compact(objects), _compact(parts)


def _field(struct: Any, name: str, path: Path, where: str, kind: type = object) -> Any:
    """``struct.name``, checked: a DataError naming the file if absent or not of ``kind``."""
    if not isinstance(struct, mat_struct) or name not in struct._fieldnames:
        raise DataError(f"{path}: {where} has no field {name!r}; not a PASCAL-Part annotation")
    value = getattr(struct, name)
    if kind is str and isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if kind is np.ndarray and not (isinstance(value, np.ndarray) and value.ndim == 2):
        raise DataError(f"{path}: {where} {name!r} is not a 2-D array ({type(value).__name__})")
    if not isinstance(value, kind):
        raise DataError(f"{path}: {where} {name!r} is not a {kind.__name__}")
    return value != 0 if kind is np.ndarray else value


def _structs(value: Any) -> list[Any]:
    """A squeezed MATLAB struct array as a list: one struct, or an array of them, or none."""
    return list(value.ravel()) if isinstance(value, np.ndarray) else [value]


def read_pascal_part(path: str | Path) -> list[PartObject]:
    """The objects of a PASCAL-Part ``.mat`` file in file order (see :data:`PartObject`); any
    problem a :class:`DataError` naming the file."""
    path = Path(path)
    try:
        contents = loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=["anno"])
    except FileNotFoundError:
        raise DataError(f"{path}: PASCAL-Part annotation not found") from None
    except (*_MAT_ERRORS, NotImplementedError) as err:
        raise DataError(f"{path}: unreadable .mat file ({type(err).__name__}: {err})") from None
    if "anno" not in contents:
        raise DataError(f"{path}: no 'anno' struct; not a PASCAL-Part annotation")
    objects = []
    for i, obj in enumerate(_structs(_field(contents["anno"], "objects", path, "anno")), 1):
        cls = _field(obj, "class", path, f"object {i}", str)
        where = f"object {i} ({cls})"
        parts = []
        for j, part in enumerate(_structs(_field(obj, "parts", path, where)), 1):
            name = _field(part, "part_name", path, f"{where} part {j}", str)
            parts.append((name, _field(part, "mask", path, f"{where} part {name!r}", np.ndarray)))
        objects.append((cls, _field(obj, "mask", path, where, np.ndarray), parts))
    return objects


def part_target(
    objects: list[PartObject],
    object_class: str,
    shape: tuple[int, int],
    path: str | Path = "",
    *,
    unknown_parts: str = "error",
    unparsed: str = "background",
) -> np.ndarray:
    """The int64 ``[3,H,W]`` target (module docstring) of the ``object_class`` objects among
    ``objects``, every mask checked against the image's ``shape``."""
    _check_options(unknown_parts, unparsed)
    groups, step = PART_GROUPS[object_class], len(PART_CLASSES[object_class]) + 1
    target = np.zeros((3, *shape), dtype=np.int64)
    labels, ids, parts = target
    kept = [[("", m), *fine] for cls, m, fine in objects if cls == object_class]
    for k, masks in enumerate(kept, 1):
        masks = [(name, np.asarray(m) != 0) for name, m in masks]  # the object's, then its parts'
        for name, m in masks:
            if m.shape != tuple(shape):
                what = f"object {k} ({object_class})" + (f" part {name!r}" if name else "")
                raise DataError(f"{path}: {what} mask size {m.shape}, image size {shape}")
        region = np.logical_or.reduce([m for _, m in masks])
        labels[region], ids[region], parts[region] = 0 if unparsed == "background" else 255, k, 0
        for name, m in masks[1:]:
            label = groups.get(name)
            if label is None and unknown_parts == "error":
                raise DataError(
                    f"{path}: unknown {object_class} part {name!r} (known: {', '.join(groups)}); "
                    "unknown_parts='ignore' labels such parts 255"
                )
            labels[m] = IGNORE_INDEX if label is None else label
            parts[m] = 0 if label is None else (k - 1) * step + label
    target[1], target[2] = _compact(ids), _compact(parts)
    return target


def _check_options(unknown_parts: str, unparsed: str) -> None:
    if unknown_parts not in ("error", "ignore") or unparsed not in ("background", "ignore"):
        raise DataError(f"{unknown_parts=}, {unparsed=}: 'error'/'ignore', 'background'/'ignore'")


def object_sizes(target: torch.Tensor | np.ndarray) -> dict[int, int]:
    """Pixel area of each object id of a ``[3,H,W]`` target (channel 1) or an ``HxW`` id map;
    0 and 255 (no object, padding) are not objects."""
    ids = torch.as_tensor(np.asarray(target))
    values, counts = torch.unique(ids[1] if ids.ndim == 3 else ids, return_counts=True)
    pairs = zip(values.tolist(), counts.tolist(), strict=True)
    return {v: c for v, c in pairs if v not in (0, IGNORE_INDEX)}


def size_bucket(area: float, image_area: float) -> str:
    """The :data:`SIZE_BUCKETS` name of an object of ``area`` pixels in ``image_area``."""
    fraction = area / image_area
    return next(name for name, (low, high) in SIZE_BUCKETS.items() if low <= fraction < high)


def object_size_buckets(target: torch.Tensor | np.ndarray) -> dict[int, str]:
    """Each object id of a target (or id map) -> its :data:`SIZE_BUCKETS` name."""
    h, w = np.asarray(target).shape[-2:]
    return {i: size_bucket(area, h * w) for i, area in object_sizes(target).items()}


# --- files ---------------------------------------------------------------------------------


def _image_dir(root: Path, *extra: Path) -> Path:
    for folder in (*(root / d for d in _IMAGE_DIRS), *extra):
        if folder.is_dir():
            return folder
    raise DataError(
        f"{root}: no image folder; expected VOC2010/JPEGImages/ (or VOCdevkit/VOC2010/"
        "JPEGImages/, JPEGImages/) with the PASCAL VOC 2010 images (VOCtrainval_03-May-2010.tar)"
    )


def _read_split(path: Path, split: str) -> list[str]:
    """Image ids of a split list: each line's first word's stem (an id, or an image path)."""
    try:
        ids = [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: split file for split {split!r} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable split file ({err})") from None
    if not ids:
        raise DataError(f"{path}: empty split file")
    return ids


def _find_images(ids: list[str], folder: Path, split_file: Path) -> list[Path]:
    images = [folder / f"{i}.jpg" for i in ids]
    images = [p if p.is_file() else p.with_suffix(".png") for p in images]
    absent = [p.stem for p in images if not p.is_file()]
    if absent:
        raise DataError(
            f"{split_file}: {len(absent)} listed images not found in {folder} "
            f"(first: {absent[0]!r}, as .jpg or .png)"
        )
    return images


class _PartDataset(InfoDataset):
    """Both layouts: ``samples`` of (image, annotation) paths, ``load``, transforms."""

    samples: list[tuple[Path, Path]]
    transforms: _Transforms
    _target: Callable[[int, tuple[int, int]], np.ndarray]

    def _setup(
        self, images: list[Path], notes: list[Path], object_class: str, strict: bool
    ) -> None:
        pairs = list(zip(images, notes, strict=True))
        classes = ("background", *PART_CLASSES[object_class])
        self.info = DatasetInfo(classes=classes, palette=voc_colormap(), splits=SPLITS)
        self.samples = [(image, note) for image, note in pairs if note.is_file()]
        self.missing = [f"{note}: annotation not found" for _, note in pairs if not note.is_file()]
        if strict and self.missing:
            raise DataError(f"{self.missing[0]} ({len(self.missing)} image(s) in all)")

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Item ``index`` without transforms."""
        image = read_image(self.samples[index][0])
        target = self._target(index, tuple(image.shape[-2:]))
        return image, tv_tensors.Mask(torch.from_numpy(target))

    def __getitem__(self, index: int) -> Any:
        image, target = self.load(index)
        return self.transforms(image, target) if self.transforms is not None else (image, target)


class PascalPartSegmentation(_PartDataset):
    """PASCAL-Part ``.mat`` annotations of one object class (module docstring). ``split_file``
    overrides the split list; ``strict=False`` lists ids without a ``.mat`` in ``missing``."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: _Transforms = None,
        *,
        object_class: str = "person",
        split_file: str | Path | None = None,
        unknown_parts: str = "error",
        unparsed: str = "background",
        strict: bool = True,
    ) -> None:
        if object_class not in PART_CLASSES:
            raise DataError(f"object_class {object_class!r}: expected one of {list(PART_CLASSES)}")
        _check_options(unknown_parts, unparsed)
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.object_class, self.unknown_parts, self.unparsed = object_class, unknown_parts, unparsed
        notes = self.root / "Annotations_Part"
        if not notes.is_dir():
            raise DataError(f"{notes}: PASCAL-Part annotation folder (<id>.mat files) not found")
        images = _image_dir(self.root)
        chosen = Path(split_file or self.root / f"{object_class}_part" / f"{split}.txt")
        self.ids = _read_split(chosen, split)
        mats = [notes / f"{i}.mat" for i in self.ids]
        self._setup(_find_images(self.ids, images, chosen), mats, object_class, strict)

    def _target(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        path = self.samples[index][1]
        objects = read_pascal_part(path)
        options = {"unknown_parts": self.unknown_parts, "unparsed": self.unparsed}
        return part_target(objects, self.object_class, shape, path, **options)


def _png_root(root: Path) -> Path | None:
    return next((p for p in (root / _PNG_ROOT, root) if (p / _PNG_GT).is_dir()), None)


class PersonPartPNG(_PartDataset):
    """The Person-Part PNG release, or :func:`make_synthetic_parts`'s copy of its layout with
    exact instance PNGs (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: _Transforms = None,
        *,
        strict: bool = True,
    ) -> None:
        self.root, self.split, self.transforms = Path(root), split, transforms
        base = _png_root(self.root)
        if base is None:
            raise DataError(f"{self.root}: no {_PNG_ROOT}/{_PNG_GT}/ folder")
        chosen = base / _PNG_LISTS / f"{split}.txt"
        self.ids = _read_split(chosen, split)
        images = _find_images(self.ids, _image_dir(self.root, base / "JPEGImages"), chosen)
        self.instances = base / _PNG_INSTANCES if (base / _PNG_INSTANCES).is_dir() else None
        self._setup(images, [base / _PNG_GT / f"{i}.png" for i in self.ids], "person", strict)

    def _target(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        path = self.samples[index][1]
        labels = read_mask(path)
        if tuple(labels.shape) != shape:
            raise DataError(f"{path}: size {tuple(labels.shape)} differs from the image's {shape}")
        check_labels(labels, self.num_classes, path)
        if self.instances is None:
            return np.stack([labels.numpy(), *component_ids(labels.numpy())])
        path = self.instances / path.name
        png = open_image(path, "instance PNG")  # RGB: object id R, part id G + 256 B
        rgb = np.asarray(png, dtype=np.int64)
        if png.mode != "RGB" or rgb.shape[:2] != shape:
            raise DataError(f"{path}: mode {png.mode} size {rgb.shape[:2]}; expected RGB {shape}")
        return np.stack([labels.numpy(), rgb[..., 0], rgb[..., 1] + 256 * rgb[..., 2]])


def person_part(
    root: str | Path, split: str = "train", transforms: _Transforms = None, **options: Any
) -> Dataset:
    """Person-Part from whichever layout ``root`` holds: the PNG release, else PASCAL-Part."""
    root = Path(root)
    if _png_root(root) is not None:
        return PersonPartPNG(root, split, transforms, **options)
    if (root / "Annotations_Part").is_dir():
        return PascalPartSegmentation(root, split, transforms, object_class="person", **options)
    raise DataError(
        f"{root}: no Person-Part data; expected the PNG release ({_PNG_ROOT}/{_PNG_GT}/*.png, "
        f"{_PNG_ROOT}/{_PNG_LISTS}/{{train,val}}.txt) or PASCAL-Part (Annotations_Part/*.mat, "
        "person_part/{train,val}.txt), and the VOC 2010 images in VOC2010/JPEGImages/"
    )


horse_part = partial(PascalPartSegmentation, object_class="horse")
"""Horse parts (head, body, leg, tail) from PASCAL-Part ``.mat`` files."""
cow_part = partial(PascalPartSegmentation, object_class="cow")
"""Cow parts (head, body, leg, tail) from PASCAL-Part ``.mat`` files."""
