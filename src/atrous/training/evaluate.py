"""The evaluation loop: a predictor over a dataset into a confusion matrix."""

from __future__ import annotations

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..inference import Predictor
from ..metrics import ConfusionMatrix


def evaluate(
    predictor: Predictor, dataset: Dataset, num_classes: int, *, progress: bool = True
) -> ConfusionMatrix:
    """Predict every ``(image, mask)`` item of ``dataset`` (uint8 image, no transforms) whole-image
    at its own size and accumulate the confusion matrix."""
    matrix = ConfusionMatrix(num_classes)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not progress):  # type: ignore[arg-type]
        image, mask = dataset[index]
        matrix.update(predictor.logits(image).argmax(0).cpu(), mask)
    return matrix
