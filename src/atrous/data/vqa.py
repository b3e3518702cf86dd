"""Question-answering data sets as downloaded: Toronto COCO-QA, VQA v1/v2 (JSON) and DAQUAR.

Items are ``(tv_tensors.Image uint8 [3,H,W], target)``, target: ``question``, ``answer`` (the
ground truth; VQA: the most common human answer), ``type`` (the question type), ``image_id``
and, for VQA, ``answers`` (the 10 human answers). Each set lists ``questions``, ``answers``
and ``types`` (for vocabularies) and ``samples`` (image path, target) without opening images.
A missing or malformed file is a :class:`~atrous.errors.DataError` naming it (and the line).

Layouts (``root`` is what the download unpacks to):

- ``coco_qa``: ``root/{train,test}/{questions,answers,img_ids,types}.txt`` (one line per
  question; types 0 object, 1 number, 2 colour, 3 location) over COCO 2014 images
  ``root/{train2014,val2014}/COCO_{train,val}2014_%012d.jpg`` (COCO-QA's test questions ask
  about val2014 images; ``images=`` points elsewhere).
- ``vqa``: ``root/Questions/[v2_]OpenEnded_mscoco_{split}2014_questions.json`` and
  ``root/Annotations/[v2_]mscoco_{split}2014_annotations.json`` (v2 first; or both files
  directly under ``root``) over ``root/{split}2014/COCO_{split}2014_%012d.jpg`` (or
  ``root/Images/mscoco/{split}2014/``); types are the annotations' ``answer_type``.
- ``daquar``: ``root/qa.894.raw.{train,test}.txt`` (full; ``reduced=True``:
  ``qa.37.raw.*``), a question line ending "... in the image123 ?" and then its answer line
  (answers of several words are comma-separated lists), over NYU-Depth images
  ``root/nyu_depth_images/image123.png`` (or ``root/images/``); types from the question's
  first words (:func:`question_type`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from ._pairs import read_image, read_json

COCO_QA_TYPES = ("object", "number", "colour", "location")
"""COCO-QA's ``types.txt`` codes 0-3."""


def question_type(question: str) -> str:
    """A question's type from its first words: number, colour, location or object."""
    q = question.lower()
    if q.startswith("how many"):
        return "number"
    if q.startswith(("what color", "what colour")) or " color " in q or " colour " in q:
        return "colour"
    if q.startswith("where"):
        return "location"
    return "object"


class QADataset(Dataset):
    """``samples``: (image path, target) per question; items read the image."""

    def __init__(
        self, samples: list[tuple[Path, dict[str, Any]]], transforms: Callable | None = None
    ) -> None:
        if not samples:
            raise DataError(f"{type(self).__name__}: no questions found")
        self.samples, self.transforms = samples, transforms
        self.questions = [t["question"] for _, t in samples]
        self.answers = [t["answer"] for _, t in samples]
        self.types = [t["type"] for _, t in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        path, target = self.samples[index]
        image = read_image(path)
        if self.transforms is not None:
            return self.transforms(image, dict(target))
        return image, dict(target)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None


def _first(candidates: list[Path], what: str) -> Path:
    for path in candidates:
        if path.exists():
            return path
    raise DataError(f"{what} not found; looked for {', '.join(str(p) for p in candidates)}")


class COCOQA(QADataset):
    """Toronto COCO-QA (Ren, Kiros, Zemel 2015), splits ``train`` and ``test``."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        transforms: Callable | None = None,
        *,
        images: str | Path | None = None,
    ) -> None:
        root = Path(root)
        folder = root / (split or "train")
        names = ("questions", "answers", "img_ids", "types")
        columns = {name: _lines(folder / f"{name}.txt") for name in names}
        counts = {name: len(lines) for name, lines in columns.items()}
        if len(set(counts.values())) != 1:
            found = ", ".join(f"{name}.txt {n}" for name, n in counts.items())
            raise DataError(f"{folder}: the four files must have one line per question: {found}")
        image_root = Path(images) if images else root
        samples = []
        for line, (q, a, i, t) in enumerate(zip(*columns.values(), strict=True), start=1):
            try:
                image_id, code = int(i), int(t)
            except ValueError:
                raise DataError(
                    f"{folder}: line {line}: img_ids.txt and types.txt hold integers, got "
                    f"{i!r} and {t!r}"
                ) from None
            if not 0 <= code < len(COCO_QA_TYPES):
                raise DataError(f"{folder / 'types.txt'}:{line}: type {code}, expected 0-3")
            target = {"question": q.strip(), "answer": a.strip(),
                      "type": COCO_QA_TYPES[code], "image_id": image_id}  # fmt: skip
            samples.append((self._image(image_root, image_id), target))
        super().__init__(samples, transforms)

    @staticmethod
    def _image(root: Path, image_id: int) -> Path:
        candidates = [root / f"{s}2014" / f"COCO_{s}2014_{image_id:012d}.jpg"
                      for s in ("train", "val")]  # fmt: skip
        return next((p for p in candidates if p.exists()), candidates[0])


class VQAJSON(QADataset):
    """VQA v1 / v2 (Antol et al. 2015; Goyal et al. 2017): open-ended questions with 10 human
    answers each; splits ``train`` and ``val`` (``version`` 2, or 1)."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        transforms: Callable | None = None,
        *,
        version: int = 2,
    ) -> None:
        root, split = Path(root), split or "train"
        prefix = "v2_" if version == 2 else ""
        q_name = f"{prefix}OpenEnded_mscoco_{split}2014_questions.json"
        a_name = f"{prefix}mscoco_{split}2014_annotations.json"
        q_path = _first([root / "Questions" / q_name, root / q_name], "VQA questions")
        a_path = _first([root / "Annotations" / a_name, root / a_name], "VQA annotations")
        questions = self._list(q_path, "questions")
        annotations = {int(a["question_id"]): a for a in self._list(a_path, "annotations")}
        folder = _first(
            [root / f"{split}2014", root / "Images" / "mscoco" / f"{split}2014",
             root / "Images" / f"{split}2014"], f"VQA images of {split}2014",
        )  # fmt: skip
        samples = []
        for index, q in enumerate(questions):
            try:
                qid, image_id, text = int(q["question_id"]), int(q["image_id"]), q["question"]
                a = annotations[qid]
                humans = [h["answer"] for h in a["answers"]]
                answer = a.get("multiple_choice_answer") or Counter(humans).most_common(1)[0][0]
                kind = a.get("answer_type", question_type(text))
            except KeyError as err:
                raise DataError(
                    f"{q_path} / {a_path}: question {index}: no {err} (question ids must match "
                    "between the two files)"
                ) from None
            path = folder / f"COCO_{split}2014_{image_id:012d}.jpg"
            samples.append((path, {"question": text, "answer": answer, "type": kind,
                                   "answers": humans, "image_id": image_id}))  # fmt: skip
        super().__init__(samples, transforms)

    @staticmethod
    def _list(path: Path, key: str) -> list[dict[str, Any]]:
        document = read_json(path, f"VQA {key}")
        if not isinstance(document, dict) or not isinstance(document.get(key), list):
            raise DataError(f"{path}: expected a JSON object with a list {key!r}")
        return document[key]


_DAQUAR_IMAGE = re.compile(r"\b(image\d+)\s*\?*\s*$")


class DAQUAR(QADataset):
    """DAQUAR (Malinowski & Fritz 2014): questions about NYU-Depth v2 images; splits ``train``
    and ``test``, the full set (894 classes) or ``reduced`` (37)."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        transforms: Callable | None = None,
        *,
        reduced: bool = False,
    ) -> None:
        root = Path(root)
        path = root / f"qa.{37 if reduced else 894}.raw.{split or 'train'}.txt"
        lines = [(n, line.strip()) for n, line in enumerate(_lines(path), 1) if line.strip()]
        if len(lines) % 2:
            raise DataError(
                f"{path}: {len(lines)} non-empty lines; expected question and answer lines in "
                "pairs (the last question has no answer)"
            )
        images = _first([root / "nyu_depth_images", root / "images"], "DAQUAR images folder")
        samples = []
        for (n, question), (_, answer) in zip(lines[::2], lines[1::2], strict=True):
            found = _DAQUAR_IMAGE.search(question)
            if found is None:
                raise DataError(
                    f"{path}:{n}: the question does not end with its image ('... in the "
                    f"image123 ?'): {question!r}"
                )
            target = {"question": question, "answer": answer, "type": question_type(question),
                      "image_id": int(found.group(1)[5:])}  # fmt: skip
            samples.append((images / f"{found.group(1)}.png", target))
        super().__init__(samples, transforms)
