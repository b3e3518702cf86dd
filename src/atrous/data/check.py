"""``atrous data check``: scan a dataset for the problems that would stop or skew training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import DataError
from ._pairs import IMAGE_SUFFIXES, PairedDataset, image_size
from .boxes import check_annotations, read_boxes, read_image_labels
from .build import build_dataset
from .folder import _split_stems, load_info
from .info import IGNORE_INDEX
from .instances import instance_semantic
from .keypoints import person_semantic


@dataclass
class CheckReport:
    """What a scan found: pairs read, problems (each naming its file), class pixel counts."""

    num_images: int
    classes: tuple[str, ...]
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pixel_counts: list[int] = field(default_factory=list)
    ignored_pixels: int = 0
    instances: int | None = None  # panoptic data sets: thing instances counted

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors

    def format(self) -> str:
        """Counts, every problem, then per-class pixel frequencies, for a terminal."""
        lines = [
            f"{self.num_images} image/mask pairs, {len(self.missing)} images without a mask, "
            f"{len(self.errors)} unreadable or inconsistent pairs"
        ]
        lines += [f"  missing: {m}" for m in self.missing]
        lines += [f"  error: {e}" for e in self.errors]
        total = sum(self.pixel_counts) + self.ignored_pixels
        if total:
            width = max(len(c) for c in (*self.classes, "(ignore 255)"))
            lines.append(f"{'class':<{width}}  {'pixels':>12}  {'share':>7}")
            for name, count in zip(self.classes, self.pixel_counts, strict=True):
                lines.append(f"{name:<{width}}  {count:>12}  {100 * count / total:>6.2f}%")
            lines.append(
                f"{'(ignore 255)':<{width}}  {self.ignored_pixels:>12}  "
                f"{100 * self.ignored_pixels / total:>6.2f}%"
            )
        if self.instances is not None:
            lines.append(f"{self.instances} thing instances (panoptic) or people (keypoints)")
        lines.append("OK" if self.ok else "FAILED: fix the files above")
        return "\n".join(lines)


def check_dataset(dataset: PairedDataset, *, progress: bool = True) -> CheckReport:
    """Read every pair of ``dataset`` (built with ``strict=False``), collecting each problem
    instead of stopping at the first, and count pixels per class."""
    counts = torch.zeros(dataset.num_classes, dtype=torch.int64)
    missing = list(getattr(dataset, "missing", ()))
    report = CheckReport(len(dataset), dataset.classes, missing=missing)
    for index in tqdm(range(len(dataset)), desc="check", unit="img", disable=not progress):
        try:
            _, mask = dataset.load(index)
        except DataError as err:
            report.errors.append(str(err))
            continue
        if isinstance(mask, dict):  # people or instances: their pixels, instances counted
            report.instances = (report.instances or 0) + int((~mask["iscrowd"].bool()).sum())
            mask = instance_semantic(mask) if "labels" in mask else person_semantic(mask)
        elif mask.ndim == 3:  # panoptic: (semantic, instance)
            semantic, instance = mask[0], mask[1]
            things = torch.tensor(getattr(dataset, "thing_classes", ()), dtype=torch.int64)
            member = torch.isin(semantic, things) & (instance > 0)
            pairs = torch.unique(semantic[member] * 1_000_000 + instance[member])
            report.instances = (report.instances or 0) + len(pairs)
            mask = semantic
        ignored = mask == IGNORE_INDEX
        report.ignored_pixels += int(ignored.sum())
        counts += torch.bincount(mask[~ignored].reshape(-1), minlength=dataset.num_classes)
    report.pixel_counts = counts.tolist()
    return report


@dataclass
class AnnotationReport:
    """What a scan of weak annotations (boxes, image labels) found, each problem naming its
    image."""

    images: int
    boxes: int
    label_lists: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [
            f"{self.images} images, {self.boxes} boxes, {self.label_lists} image-label lists, "
            f"{len(self.problems)} problems",
            *(f"  {problem}" for problem in self.problems),
            "OK" if self.ok else "FAILED: fix the annotations above",
        ]
        return "\n".join(lines)


def check_annotation_files(
    root: str | Path,
    split: str | None,
    *,
    boxes: str | Path | None = None,
    image_labels: str | Path | None = None,
    num_classes: int | None = None,
) -> AnnotationReport:
    """``atrous data check --boxes / --image-labels`` on a folder data set: every annotation
    problem (unknown class, box outside its image, empty box, image without annotation)."""
    root = Path(root)
    classes = load_info(root, num_classes).classes
    folder = root / "images"
    if not folder.is_dir():
        raise DataError(f"{folder}: no images/ folder (a folder data set keeps its images there)")
    images = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise DataError(f"{folder}: no .jpg or .png images")
    stems, _ = _split_stems(root, split, images, 0.1, [])
    found_boxes = read_boxes(boxes, classes) if boxes else None
    labels = read_image_labels(image_labels, classes) if image_labels else None
    sizes, unreadable = {}, []
    for stem in stems:  # every unreadable image is listed, the others are still checked
        try:
            sizes[stem] = image_size(images[stem])  # as displayed: boxes are drawn on that
        except DataError as err:
            unreadable.append(str(err))
    where = str(boxes or image_labels)
    problems = check_annotations(stems, sizes, boxes=found_boxes, image_labels=labels, where=where)
    count = sum(len(v) for v in (found_boxes or {}).values())
    return AnnotationReport(len(stems), count, len(labels or {}), unreadable + problems)


def check_data(
    dataset: str,
    root: str | Path,
    split: str | None = None,
    *,
    num_classes: int | None = None,
    boxes: str | Path | None = None,
    image_labels: str | Path | None = None,
) -> CheckReport | AnnotationReport:
    """``atrous data check``: the pairs of ``dataset`` (every split of a folder, the ``train``
    split of an official layout unless ``split`` is given) or, with ``boxes`` /
    ``image_labels``, the weak annotations of a folder."""
    if split is None and dataset != "folder":  # official layouts are read split by split
        split = "train"
    if boxes or image_labels:
        return check_annotation_files(
            root, split, boxes=boxes, image_labels=image_labels, num_classes=num_classes
        )
    options = {"num_classes": num_classes} if num_classes else {}
    if dataset in ("coco_keypoints", "coco_instances"):  # checked when it is built
        return check_dataset(build_dataset(dataset, root, split, **options))
    return check_dataset(build_dataset(dataset, root, split, strict=False, **options))
