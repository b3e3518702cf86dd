"""Calibration images for int8 quantization, read and normalized by the predictor's own code
(:meth:`Predictor.normalize`: the same reader, EXIF orientation and mean/std as inference), so
the activation ranges the quantizer measures are the ones the deployed model will see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from torch import Tensor

from ..data import build_dataset
from ..errors import ConfigError, DataError
from .predictor import Predictor
from .writer import find_images


def _spread(count: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all of them when fewer)."""
    if count <= limit:
        return list(range(count))
    return [round(i * (count - 1) / (limit - 1)) if limit > 1 else 0 for i in range(limit)]


def calibration_inputs(
    source: str | Path,
    predictor: Predictor,
    *,
    data: str | Path | None = None,
    dataset: str = "folder",
    limit: int = 64,
) -> Iterator[Tensor]:
    """Normalized ``[3, H, W]`` images for calibration, at their own sizes: ``source`` is a
    folder of images (.jpg/.png), or else the name of a split of ``dataset`` under ``data``.
    At most ``limit`` images, spread evenly over the folder or split. Bad sources raise
    ``ConfigError`` / ``DataError`` before the first image is read."""
    if limit < 1:
        raise ConfigError(f"--calibration-images must be at least 1, got {limit}")
    path = Path(source)
    if path.is_dir():
        paths = find_images([path])
        return (predictor.normalize(paths[i]) for i in _spread(len(paths), limit))
    if data is None:
        raise ConfigError(
            f"--calibration {source}: not a folder; to calibrate on a split named {source!r} "
            "give its dataset with --data (and --dataset)"
        )
    options = {}
    if dataset in ("folder", "panoptic_folder") and predictor.info is not None:
        options["num_classes"] = len(predictor.info.classes)
    split = build_dataset(dataset, data, str(source), **options)
    if len(split) == 0:
        raise DataError(f"--calibration {source}: split of {data} holds no images")
    return (predictor.normalize(split[i][0]) for i in _spread(len(split), limit))
