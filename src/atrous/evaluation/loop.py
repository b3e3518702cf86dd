"""The evaluation loop: every ``(image, target)`` of a dataset through a predictor, into
accumulators; the task says what a target holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..inference import Predictor
from ..tasks import SemanticTask, Task
from .accumulators import Accumulator, Prediction


def accumulate(
    predictor: Predictor,
    dataset: Dataset,
    accumulators: Mapping[str, Accumulator],
    *,
    task: Task | None = None,
    progress: bool = True,
) -> None:
    """Predict every item of ``dataset`` (uint8 image, no transforms) at its own size, the way
    ``predictor`` is set up (scales, flip, sliding window), and feed each
    :class:`~.accumulators.Prediction` to every accumulator in order. ``task`` (default
    semantic) splits each target into its semantic mask and the task's whole target."""
    task = task or SemanticTask()
    samples = getattr(dataset, "samples", None)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not progress):  # type: ignore[arg-type]
        image, target = dataset[index]
        semantic, whole = task.split_target(target)
        batch = predictor.normalize(image).unsqueeze(0)
        scores = predictor.scores(batch, [image])[0]
        name = str(samples[index][0]) if samples is not None else str(index)
        prediction = Prediction(
            index, name, image, semantic, scores, scores.argmax(0).cpu(), target=whole
        )
        for accumulator in accumulators.values():
            accumulator.update(prediction)


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    accumulators: Mapping[str, Accumulator],
    *,
    task: Task | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`accumulate`, then ``{name: accumulator.compute()}``."""
    accumulate(predictor, dataset, accumulators, task=task, progress=progress)
    return {name: accumulator.compute() for name, accumulator in accumulators.items()}
