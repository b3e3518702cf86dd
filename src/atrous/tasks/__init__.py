"""Tasks: one module per kind of training. A task owns what differs between them: how
annotations become training targets, the loss, how model outputs become predictions, and its
evaluator. A recipe names its task with the top-level key ``task:`` (default ``semantic``)."""

from .base import PANOPTIC_DATASETS, Evaluator, StepLoss, Task, all_reduce_
from .masklab import MaskLabEvaluator, MaskLabTask
from .panoptic import PanopticEvaluator, PanopticScores, PanopticTask, panoptic_ids
from .parts import PartsEvaluator, PartsTask
from .personlab import PersonLabEvaluator, PersonLabTask
from .semantic import SemanticEvaluator, SemanticTask
from .vqa import VQAEvaluator, VQATask
from .weak import EMSettings, WeakTask, save_estimates

TASKS: dict[str, type[Task]] = {
    "semantic": SemanticTask,
    "weak": WeakTask,
    "panoptic": PanopticTask,
    "personlab": PersonLabTask,
    "masklab": MaskLabTask,
    "parts": PartsTask,
    "vqa": VQATask,
}
"""Task names (a recipe's ``task:``) -> task classes; a new kind of training adds one here."""

__all__ = [
    "EMSettings",
    "Evaluator",
    "MaskLabEvaluator",
    "MaskLabTask",
    "PANOPTIC_DATASETS",
    "PanopticEvaluator",
    "PanopticScores",
    "PanopticTask",
    "PartsEvaluator",
    "PartsTask",
    "PersonLabEvaluator",
    "PersonLabTask",
    "SemanticEvaluator",
    "SemanticTask",
    "StepLoss",
    "TASKS",
    "VQAEvaluator",
    "VQATask",
    "Task",
    "WeakTask",
    "all_reduce_",
    "panoptic_ids",
    "save_estimates",
]
