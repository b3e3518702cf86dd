"""Visual question answering (ABC-CNN, Chen et al. 2015): questions tokenised against a plain
vocabulary built from the training questions, answers as classes (the most frequent training
answers), cross-entropy over the answers (soft VQA targets where a question has human
answers: each answer's VQA accuracy, normalised), predictions as answer strings, and an
evaluator of accuracy overall and per question type (VQA accuracy, WUPS where available).

The vocabulary and the answer list are plain JSON (``vqa_vocab.json`` beside the checkpoint:
``{"words": [...], "answers": [...]}``) so that a checkpoint can answer questions later; no
downloads.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import DataError
from ..metrics.vqa import QAAccuracy, normalize_answer, vqa_soft_scores
from .base import StepLoss, Task

QA_DATASETS = ("coco_qa", "vqa", "daquar")
"""Data sets whose items are ``(image, question target)`` (see :mod:`atrous.data.vqa`)."""
PAD_TOKEN, UNKNOWN_TOKEN = "<pad>", "<unk>"
UNANSWERABLE = -100
"""The answer index of a training answer outside the answer classes (ignored by the loss)."""
VOCAB_NAME = "vqa_vocab.json"

__all__ = ["AnswerSet", "QA_DATASETS", "VQAEvaluator", "VQATask", "Vocabulary", "tokenize"]


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers; punctuation dropped ("What's red?" -> what, s, red)."""
    return re.findall(r"[a-z0-9]+", text.lower())


class Vocabulary:
    """Words -> ids: 0 is padding, 1 an unknown word, then the training questions' words by
    frequency (ties in order of appearance), those seen at least ``min_count`` times."""

    def __init__(self, words: Sequence[str]) -> None:
        if list(words[:2]) != [PAD_TOKEN, UNKNOWN_TOKEN]:
            raise ValueError(f"a vocabulary starts with {PAD_TOKEN!r}, {UNKNOWN_TOKEN!r}")
        self.words = list(words)
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_questions(cls, questions: Iterable[str], min_count: int = 1) -> Vocabulary:
        counts = Counter(w for q in questions for w in tokenize(q))
        kept = [w for w, n in counts.most_common() if n >= min_count]
        return cls([PAD_TOKEN, UNKNOWN_TOKEN, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, question: str) -> list[int]:
        return [self.ids.get(w, 1) for w in tokenize(question)]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[int(i)] for i in ids if int(i) != 0)

    def pad(self, questions: Sequence[str]) -> Tensor:
        """``[N, T]`` token ids, padded with 0 on the right (T: the longest, at least 1)."""
        encoded = [self.encode(q) or [1] for q in questions]
        out = torch.zeros(len(encoded), max(map(len, encoded), default=1), dtype=torch.long)
        for row, ids in zip(out, encoded, strict=True):
            row[: len(ids)] = torch.tensor(ids)
        return out


class AnswerSet:
    """Answer strings <-> class indices: the ``max_answers`` most frequent training answers
    (normalised, :func:`~atrous.metrics.vqa.normalize_answer`)."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.ids = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def from_answers(cls, answers: Iterable[str], max_answers: int | None = None) -> AnswerSet:
        counts = Counter(normalize_answer(a) for a in answers)
        return cls([a for a, _ in counts.most_common(max_answers)])

    def __len__(self) -> int:
        return len(self.answers)

    def index(self, answer: str) -> int:
        return self.ids.get(normalize_answer(answer), UNANSWERABLE)

    def __getitem__(self, index: int) -> str:
        return self.answers[index]


def _images(images: Sequence[Tensor], size: int | None, mean: Sequence[float],
            std: Sequence[float]) -> Tensor:  # fmt: skip
    """uint8 (or float in [0, 1]) images -> one normalised float batch, resized to ``size``."""
    floats = [i.as_subclass(Tensor) for i in images]
    floats = [i.float() / 255 if not i.is_floating_point() else i.float() for i in floats]
    if size is not None:
        floats = [F.interpolate(i[None], size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)[0] for i in floats]  # fmt: skip
    if len({tuple(i.shape) for i in floats}) > 1:
        raise DataError(
            f"images of sizes {sorted({tuple(i.shape[-2:]) for i in floats})} in one batch: "
            "give the vqa task an image_size to resize them to"
        )
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (torch.stack(floats) - m) / s


class VQATask(Task):
    """Question answering with ABC-CNN (model ``abc_cnn``) on :data:`QA_DATASETS` or the
    shape-QA set. The vocabulary and answers come from the training set (:meth:`fit`, which
    :meth:`model_options` calls) or a saved file (:meth:`load`)."""

    name = "vqa"
    main_metric = "accuracy"

    def __init__(
        self,
        vocab: Vocabulary | None = None,
        answers: AnswerSet | None = None,
        *,
        max_answers: int | None = 1000,
        image_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.vocab, self.answer_set, self.max_answers = vocab, answers, max_answers
        self.image_size, self.mean, self.std = image_size, tuple(mean), tuple(std)

    @classmethod
    def recipe_problems(cls, cfg: Any) -> list[str]:
        problems = []
        if cfg.model.name != "abc_cnn":
            problems.append(f"task: vqa trains model.name = abc_cnn, not {cfg.model.name}")
        if cfg.data.dataset not in QA_DATASETS:
            problems.append(f"task: vqa reads a question-answering data set "
                            f"({', '.join(QA_DATASETS)}), not {cfg.data.dataset}")  # fmt: skip
        return problems

    # -- vocabulary -----------------------------------------------------------------------------
    def fit(self, dataset: Any, min_count: int = 1) -> VQATask:
        """The vocabulary and answer classes from a training set's ``questions`` and
        ``answers`` (VQA: every human answer counts)."""
        self.vocab = Vocabulary.from_questions(dataset.questions, min_count)
        humans = [a for _, t in getattr(dataset, "samples", []) for a in t.get("answers", [])]
        self.answer_set = AnswerSet.from_answers(humans or dataset.answers, self.max_answers)
        return self

    def model_options(self, dataset: Any) -> dict[str, Any]:
        if self.vocab is None or self.answer_set is None:
            self.fit(dataset)
        return {"vocab_size": len(self.vocab), "num_answers": len(self.answer_set)}

    def bind(self, model: nn.Module) -> None:
        sizes = (getattr(model, "vocab_size", None), getattr(model, "num_answers", None))
        mine = (len(self.vocab), len(self.answer_set)) if self.vocab and self.answer_set else None
        if mine is not None and sizes != mine:
            raise ValueError(
                f"the model has vocab_size, num_answers = {sizes}; the task's vocabulary and "
                f"answers have {mine}: build the model with the task's model_options"
            )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"words": self.vocab.words, "answers": self.answer_set.answers}))
        return path

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> VQATask:
        """The task with the vocabulary and answers :meth:`save` wrote (``vqa_vocab.json``)."""
        try:
            saved = json.loads(Path(path).read_text())
            return cls(Vocabulary(saved["words"]), AnswerSet(saved["answers"]), **options)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: not a saved VQA vocabulary ({err})") from None

    def on_checkpoint(self, model: nn.Module, out_dir: Path, step: int, device: Any) -> None:
        self.save(Path(out_dir) / VOCAB_NAME)

    # -- batches, loss, predictions ------------------------------------------------------------
    def normalize(self, images: Sequence[Tensor] | Tensor) -> Tensor:
        """uint8 (or float in ``[0, 1]``) images -> the normalised float batch the model takes
        (resized to ``image_size`` where set)."""
        return _images(list(images), self.image_size, self.mean, self.std)

    def collate(self, batch: list[Any]) -> tuple[Tensor, dict[str, Any]]:
        """Images (normalised, one size) and targets: ``questions`` ``[N, T]`` ids,
        ``answer`` ``[N]`` class ids (-100 outside the classes), ``soft`` ``[N, A]`` VQA
        scores where human answers are given, and the strings, types and masks as lists."""
        return self.normalize([i for i, _ in batch]), self.targets([t for _, t in batch])

    def targets(self, targets: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """:meth:`collate`'s targets alone (for features computed once per image)."""
        out: dict[str, Any] = {
            "questions": self.vocab.pad([t["question"] for t in targets]),
            "answer": torch.tensor([self.answer_set.index(t["answer"]) for t in targets]),
            "answers_text": [t["answer"] for t in targets],
            "types": [t["type"] for t in targets],
        }
        if all("answers" in t for t in targets):
            out["humans"] = [t["answers"] for t in targets]
            soft = torch.zeros(len(targets), len(self.answer_set))
            for row, t in zip(soft, targets, strict=True):
                for answer, score in vqa_soft_scores(t["answers"]).items():
                    if (i := self.answer_set.index(answer)) != UNANSWERABLE:
                        row[i] = score
            out["soft"] = soft
        if all("mask" in t for t in targets):
            out["masks"] = torch.stack([torch.as_tensor(t["mask"]) for t in targets])
        return out

    def forward(self, net: nn.Module, images: Tensor, targets: Any) -> Tensor:
        return net(images, targets["questions"])

    def loss(self, outputs: Tensor, masks: Any, *, top_k_percent: float = 1.0) -> StepLoss:
        """Cross-entropy over the answers; with human answers, against their VQA scores
        (normalised to sum to 1; questions none of whose answers is a class are left out)."""
        logits, targets = outputs.float(), masks
        if "soft" in targets:
            soft = targets["soft"]
            kept = soft.sum(1) > 0
            weights = soft[kept] / soft[kept].sum(1, keepdim=True)
            value = -(weights * logits[kept].log_softmax(1)).sum(1).mean() if kept.any() else (
                logits.sum() * 0.0)  # fmt: skip
            return StepLoss(value, kept.sum())
        answer = targets["answer"]
        kept = answer != UNANSWERABLE
        if not kept.any():
            return StepLoss(logits.sum() * 0.0, kept.sum())
        return StepLoss(F.cross_entropy(logits, answer, ignore_index=UNANSWERABLE), kept.sum())

    def predict(self, outputs: Tensor) -> list[str]:
        """Answer logits ``[N, A]`` -> answer strings."""
        return [self.answer_set[int(i)] for i in outputs.argmax(dim=1)]

    def answer(self, model: nn.Module, images: Tensor, questions: Sequence[str]) -> list[str]:
        """Answer ``questions`` (one per image) about uint8 ``images`` with a trained model."""
        x = self.normalize(images)
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = model(x.to(device), self.vocab.pad(questions).to(device))
        return self.predict(logits)

    def evaluator(self, predictor: Any = None, num_classes: int = 0) -> VQAEvaluator:
        return VQAEvaluator(self)


class VQAEvaluator:
    """Accuracy overall and per question type (and the VQA accuracy with human answers):
    ``update((logits, targets))`` per collated batch."""

    def __init__(self, task: VQATask) -> None:
        self.task, self.accuracy = task, QAAccuracy()

    def update(self, prediction: tuple[Tensor, dict[str, Any]]) -> None:
        logits, targets = prediction
        predicted = self.task.predict(logits)
        self.accuracy.update(
            predicted, targets["answers_text"], targets["types"], targets.get("humans")
        )

    def merge(self, other: VQAEvaluator) -> VQAEvaluator:
        self.accuracy.merge(other.accuracy)
        return self

    def all_reduce(self, device: torch.device) -> None:
        """One process only: the strings kept per question are not reduced across ranks."""

    def compute(self, *, with_wups: bool = False) -> dict[str, Any]:
        return self.accuracy.compute(with_wups=with_wups)
