"""The evaluation loop: every ``(image, mask)`` of a dataset through a predictor, into
accumulators."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..inference import Predictor
from .accumulators import Accumulator, Prediction


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    accumulators: Mapping[str, Accumulator],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every item of ``dataset`` (uint8 image, no transforms) at its own size, the way
    ``predictor`` is set up (scales, flip, sliding window), and feed each
    :class:`~.accumulators.Prediction` to every accumulator in order. Returns
    ``{name: accumulator.compute()}``."""
    samples = getattr(dataset, "samples", None)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not progress):  # type: ignore[arg-type]
        image, mask = dataset[index]
        panoptic = mask if mask.ndim == 3 else None  # (semantic, instance) masks
        semantic = mask[0] if panoptic is not None else mask
        batch = predictor.normalize(image).unsqueeze(0)
        scores = predictor.scores(batch, [image])[0]
        name = str(samples[index][0]) if samples is not None else str(index)
        prediction = Prediction(
            index, name, image, semantic, scores, scores.argmax(0).cpu(), panoptic_mask=panoptic
        )
        for accumulator in accumulators.values():
            accumulator.update(prediction)
    return {name: accumulator.compute() for name, accumulator in accumulators.items()}
