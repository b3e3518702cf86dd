"""Scoring a checkpoint on a dataset split: the ``atrous eval`` and ``atrous crf-search`` jobs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ..config import from_dict
from ..data import build_dataset
from ..errors import DataError
from ..inference import Predictor, check_output_file, json_report_with, resolve_device
from ..loader import Loaded, load
from ..metrics import ConfusionMatrix
from ..tasks import TASKS
from .accumulators import (
    Accumulator,
    Examples,
    PerImage,
    Prediction,
    Refinement,
    Refiner,
    Trimap,
)
from .crf_search import crf_grid_search
from .loop import evaluate
from .pictures import comparison_grid


class NonFinite:
    """Counts the images whose scores hold NaN or Inf (their argmax is noise, not class 0)."""

    def __init__(self) -> None:
        self.images: list[str] = []

    def update(self, prediction: Prediction) -> None:
        if not bool(torch.isfinite(prediction.scores).all()):
            self.images.append(prediction.name)

    def compute(self) -> dict[str, Any] | None:
        if not self.images:
            return None
        return {"images": len(self.images), "first": self.images[:5]}


is_eval_json = json_report_with("confusion_matrix")
"""Whether a path is an earlier ``atrous eval`` result, which a new evaluation may replace."""


def check_eval_outputs(out: str | Path | None, picture: str | Path | None = None) -> None:
    """Check, before an evaluation starts, that its JSON report (and comparison picture) can be
    written: not a folder, not under a file, and replacing no file but an earlier report."""
    if out is not None:
        check_output_file(out, replaceable=is_eval_json)
    if picture is not None:
        check_output_file(picture, what="picture")


def checkpoint_and_data(
    checkpoint: str | Path | Loaded,
    data_root: str | Path,
    split: str | None,
    dataset: str,
    device: str,
    predictor_options: Mapping[str, Any],
) -> tuple[Loaded, Predictor, Any]:
    """The loaded checkpoint, a predictor for it and the split to score it on, checked to
    agree on the number of classes."""
    loaded = checkpoint if isinstance(checkpoint, Loaded) else load(checkpoint)
    predictor = Predictor.from_loaded(loaded, device=resolve_device(device), **predictor_options)
    classes = loaded.info.classes
    options = {"num_classes": len(classes)} if dataset in ("folder", "panoptic_folder") else {}
    data = build_dataset(dataset, data_root, split, **options)
    if data.num_classes != len(classes):
        raise DataError(
            f"{data_root}: {dataset} has {data.num_classes} classes, the checkpoint "
            f"{loaded.path} predicts {len(classes)}"
        )
    return loaded, predictor, data


def evaluate_checkpoint(
    checkpoint: str | Path | Loaded,
    data_root: str | Path,
    *,
    split: str | None = "val",
    dataset: str = "folder",
    device: str = "auto",
    progress: bool = True,
    trimap_widths: Sequence[int] = (),
    per_image: bool = False,
    refiners: Mapping[str, Refiner] | None = None,
    picture: str | Path | None = None,
    out: str | Path | None = None,
    **predictor_options: Any,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Evaluate a checkpoint (a path, or what :func:`atrous.loader.load` read) on ``dataset``
    (a name in ``atrous.data.DATASETS``) under ``data_root`` with its task's evaluator (the
    recipe's ``task:``; panoptic adds PQ and Parsing Covering); returns the metrics and the
    class names.

    ``predictor_options`` (scales, flip, output_stride, crop, stride) set up the predictor.
    The result holds ``ConfusionMatrix.compute()``'s keys and ``confusion_matrix``;
    ``trimap`` (band mIoU per width) with ``trimap_widths``; ``per_image`` records, worst
    first, when asked; under ``refined`` the same metrics and ``seconds_per_image`` for each
    of ``refiners``. ``picture`` writes image | ground truth | prediction | each refinement
    for the first images. ``out``, the JSON path the caller will write, is checked up front
    (:func:`check_eval_outputs`), as is ``picture``. Images whose scores hold NaN or Inf are
    counted under ``nonfinite_scores`` (``{"images": n, "first": [names]}``), which
    :func:`~.report.format_table` prints as a warning; a checkpoint whose weights hold NaN is
    refused when loaded.
    """
    check_eval_outputs(out, picture)
    loaded, predictor, data = checkpoint_and_data(
        checkpoint, data_root, split, dataset, device, predictor_options
    )
    n = len(loaded.info.classes)
    # the checkpoint's recipe's task, set up as its recipe says, scores it (panoptic: PQ, PC
    # with the recipe's post-processing; personlab: keypoint and mask AP)
    config = loaded.state.get("config")
    task_class = TASKS[loaded.task]
    task = task_class.from_recipe(from_dict(config, str(loaded.path))) if config else task_class()
    accumulators: dict[str, Accumulator] = {
        "metrics": task.evaluator(predictor, n),
        "nonfinite": NonFinite(),
    }
    if trimap_widths:
        accumulators["trimap"] = Trimap(n, trimap_widths)
    if per_image:
        accumulators["per_image"] = PerImage(n)
    for name, refiner in (refiners or {}).items():
        accumulators[f"refined.{name}"] = Refinement(name, refiner, n, trimap_widths)
    if picture is not None:
        accumulators["examples"] = Examples()
    found = evaluate(predictor, data, accumulators, task=task, progress=progress)
    result = dict(found.pop("metrics"))
    nonfinite = found.pop("nonfinite")
    if nonfinite is not None:
        result["nonfinite_scores"] = nonfinite
    for key in ("trimap", "per_image"):
        if key in found:
            result[key] = found.pop(key)
    if refiners:
        result["refined"] = {name: found.pop(f"refined.{name}") for name in refiners}
    if picture is not None and found.get("examples"):
        grid = comparison_grid(found["examples"], loaded.info.palette)
        Image.fromarray(grid).save(picture)
    return result, loaded.info.classes


def search_crf_checkpoint(
    checkpoint: str | Path,
    data_root: str | Path,
    *,
    split: str | None = "val",
    dataset: str = "folder",
    images: int = 100,
    device: str = "auto",
    backend: str = "auto",
    grid: Mapping[str, Sequence[float]] | None = None,
    progress: bool = True,
    **predictor_options: Any,
) -> dict[str, Any]:
    """The DeepLab v1/v2 CRF cross-validation: predict the first ``images`` of ``split`` once
    and score every combination of ``grid`` (default: the papers', ``atrous.refine.GRID``).
    Returns ``{"results": [{params..., "miou"}, ...] best first, "miou_without_crf": ...}``."""
    loaded, predictor, data = checkpoint_and_data(
        checkpoint, data_root, split, dataset, device, predictor_options
    )
    plain = ConfusionMatrix(len(loaded.info.classes))

    def samples() -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        for index in range(min(images, len(data))):
            image, mask = data[index]
            probs = predictor.predict_proba(image)
            plain.update(probs.argmax(0), mask)
            yield image, probs, mask

    results = crf_grid_search(
        samples(),
        len(loaded.info.classes),
        grid=dict(grid) if grid is not None else None,
        backend=backend,
        progress=progress,
    )
    return {"results": results, "miou_without_crf": plain.compute()["miou"]}
