"""Visual question answering -> numbers: exact-match accuracy overall and per question type,
the VQA accuracy over human answers, WUPS (with WordNet, optional) and the attention IoU.

- accuracy: the fraction of questions whose predicted answer equals the ground truth after
  :func:`normalize_answer`.
- VQA accuracy (Antol et al. 2015, as the VQA evaluation code computes it): with the ``n``
  human answers of a question (10 in VQA), ``min(#humans who gave the answer / 3, 1)``
  averaged over the ``n`` subsets of ``n - 1`` humans (10-choose-9).
- WUPS at a threshold ``t`` (Malinowski & Fritz 2014): answers are word sets; a word pair's
  Wu-Palmer similarity over WordNet (the best pair of their noun synsets) counts fully at or
  above ``t`` and times 0.1 below it; a question scores ``min(prod_a max_t WUP(a, t),
  prod_t max_a WUP(a, t))``. Needs nltk with the WordNet data (``pip install atrous[wups]``,
  then ``python -m nltk.downloader wordnet``).
- attention IoU: see :func:`attention_iou`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import AtrousError

_PUNCTUATION = re.compile(r"[^\w\s]")


def normalize_answer(answer: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed (a small part of the VQA
    evaluation's normalisation: its digit words, article and contraction rules are not ported)."""
    return " ".join(_PUNCTUATION.sub(" ", answer.lower()).split())


def vqa_accuracy(answer: str, human_answers: Sequence[str]) -> float:
    """``min(#humans / 3, 1)`` averaged over the subsets that leave one human out."""
    answer = normalize_answer(answer)
    humans = [normalize_answer(h) for h in human_answers]
    if not humans:
        raise ValueError("vqa_accuracy needs the human answers of the question, got none")
    if len(humans) == 1:
        return float(humans[0] == answer)
    matches = sum(h == answer for h in humans)
    # leaving out human i: the others' matches are matches - [human i matched]
    scores = [min((matches - (h == answer)) / 3.0, 1.0) for h in humans]
    return sum(scores) / len(scores)


def vqa_soft_scores(human_answers: Sequence[str]) -> dict[str, float]:
    """Each distinct human answer's VQA accuracy (the soft target of VQA training)."""
    return {a: vqa_accuracy(a, human_answers) for a in dict.fromkeys(human_answers)}


def _wordnet() -> Any:
    try:
        from nltk.corpus import wordnet  # noqa: PLC0415  (an optional extra)

        wordnet.synsets("dog")
    except (ImportError, LookupError) as err:
        raise AtrousError(
            "WUPS needs nltk with the WordNet data: pip install 'atrous[wups]', then "
            f"python -m nltk.downloader wordnet ({type(err).__name__})"
        ) from None
    return wordnet


def wordnet_available() -> bool:
    """Whether WUPS can be computed here (nltk and its WordNet data are installed)."""
    try:
        _wordnet()
    except AtrousError:
        return False
    return True


def wups(prediction: str, truth: str, threshold: float, wordnet: Any = None) -> float:
    """One question's WUPS at ``threshold`` (0.9 and 0.0 in the literature)."""
    wordnet = wordnet or _wordnet()

    def similarity(a: str, b: str) -> float:
        if a == b:
            return 1.0
        pairs = [
            x.wup_similarity(y) or 0.0
            for x in wordnet.synsets(a, pos="n")
            for y in wordnet.synsets(b, pos="n")
        ]
        best = max(pairs, default=0.0)
        return best if best >= threshold else 0.1 * best

    def covered(xs: list[str], ys: list[str]) -> float:
        product = 1.0
        for x in xs:
            product *= max((similarity(x, y) for y in ys), default=0.0)
        return product

    a, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    return min(covered(a, t), covered(t, a))


class QAAccuracy:
    """Accumulates exact-match accuracy overall and per question type, and the VQA accuracy
    where human answers are given (``update(predictions, answers, types, human_answers)``)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.vqa_sum, self.vqa_count = 0.0, 0
        self.pairs: list[tuple[str, str]] = []

    def update(
        self,
        predictions: Sequence[str],
        answers: Sequence[str],
        types: Sequence[str],
        human_answers: Sequence[Sequence[str] | None] | None = None,
    ) -> None:
        if not len(predictions) == len(answers) == len(types):
            raise ValueError(
                f"{len(predictions)} predictions, {len(answers)} answers and {len(types)} "
                "question types: one each per question"
            )
        humans = human_answers or [None] * len(answers)
        for p, a, t, h in zip(predictions, answers, types, humans, strict=True):
            self.total[t] += 1
            self.correct[t] += normalize_answer(p) == normalize_answer(a)
            if h:
                self.vqa_sum += vqa_accuracy(p, h)
                self.vqa_count += 1
            self.pairs.append((p, a))

    def merge(self, other: QAAccuracy) -> QAAccuracy:
        self.correct.update(other.correct)
        self.total.update(other.total)
        self.vqa_sum += other.vqa_sum
        self.vqa_count += other.vqa_count
        self.pairs.extend(other.pairs)
        return self

    def compute(self, *, with_wups: bool = False) -> dict[str, Any]:
        """``accuracy``, ``per_type`` (type -> accuracy), ``questions``; ``vqa_accuracy``
        where human answers were given; ``wups_0.9`` and ``wups_0.0`` with ``with_wups``
        (raises a clear error without WordNet)."""
        total = sum(self.total.values())
        out: dict[str, Any] = {
            "accuracy": sum(self.correct.values()) / total if total else float("nan"),
            "per_type": {t: self.correct[t] / n for t, n in sorted(self.total.items())},
            "questions": total,
        }
        if self.vqa_count:
            out["vqa_accuracy"] = self.vqa_sum / self.vqa_count
        if with_wups:
            wordnet = _wordnet()
            for threshold in (0.9, 0.0):
                scores = [wups(p, a, threshold, wordnet) for p, a in self.pairs]
                out[f"wups_{threshold}"] = sum(scores) / len(scores) if scores else float("nan")
        return out


def attention_iou(attention: Tensor, mask: Tensor) -> float:
    """How well an attention map picks out the object a question is about: the map ``[h, w]``
    (any positive scores, e.g. the spatial softmax at the features' size) is resized
    bilinearly to the mask's ``[H, W]``, its ``k`` highest pixels are kept, ``k`` being the
    mask's area, and the IoU of those pixels with the mask is returned (with ``k`` equal to the
    area, IoU = p / (2k - p) for the ``p`` kept pixels on the object: 1 when the top of the
    map is the object, about ``k / (2 HW - k)`` for a uniform one). NaN for an empty mask."""
    mask = mask.bool()
    k = int(mask.sum())
    if k == 0:
        return float("nan")
    size = tuple(mask.shape[-2:])
    up = F.interpolate(attention[None, None].float(), size=size, mode="bilinear",
                       align_corners=False)[0, 0]  # fmt: skip
    kept = torch.zeros(up.numel(), dtype=torch.bool)
    kept[up.flatten().topk(k).indices.cpu()] = True
    hits = int((kept & mask.flatten().cpu()).sum())
    return hits / (2 * k - hits)


def attention_mass(attention: Tensor, mask: Tensor) -> float:
    """The share of the attention (resized to the mask's size, renormalised) that falls on the
    mask; NaN for an empty mask."""
    mask = mask.bool()
    if not mask.any():
        return float("nan")
    up = F.interpolate(attention[None, None].float(), size=tuple(mask.shape[-2:]),
                       mode="bilinear", align_corners=False)[0, 0].clamp(min=0)  # fmt: skip
    return float(up[mask.to(up.device)].sum() / up.sum())


class AttentionIoU:
    """Accumulates :func:`attention_iou` and :func:`attention_mass` over questions, overall
    and per question type; questions without an object mask (e.g. "how many ...?" with the
    answer zero) are left out."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.iou: dict[str, list[float]] = {}
        self.mass: dict[str, list[float]] = {}

    def update(self, attention: Tensor, masks: Tensor, types: Sequence[str]) -> None:
        """``attention [N, h, w]``, ``masks [N, H, W]`` (bool), one type per question."""
        for a, m, t in zip(attention, masks, types, strict=True):
            iou = attention_iou(a, m)
            if iou == iou:
                self.iou.setdefault(t, []).append(iou)
                self.mass.setdefault(t, []).append(attention_mass(a, m))

    def merge(self, other: AttentionIoU) -> AttentionIoU:
        for mine, theirs in ((self.iou, other.iou), (self.mass, other.mass)):
            for t, values in theirs.items():
                mine.setdefault(t, []).extend(values)
        return self

    def compute(self) -> dict[str, Any]:
        """``attention_iou`` and ``attention_mass`` (means over questions), each also
        ``..._per_type``."""

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else float("nan")

        out: dict[str, Any] = {}
        for name, table in (("attention_iou", self.iou), ("attention_mass", self.mass)):
            out[name] = mean([v for values in table.values() for v in values])
            out[f"{name}_per_type"] = {t: mean(v) for t, v in sorted(table.items())}
        return out
