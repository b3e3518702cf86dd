"""The vqa task: tokenisation and the vocabulary round trip, answers as classes, collate,
the loss (hard and soft VQA targets, against hand computations), training lowers the loss,
the saved vocabulary, and the demo end to end with a few steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from atrous.data import make_shape_qa
from atrous.demo import DEMOS
from atrous.demo_vqa import pretrain_features, run_vqa_demo, train_vqa, vqa_report
from atrous.errors import ConfigError, DataError
from atrous.tasks import TASKS, VQATask
from atrous.tasks.vqa import UNANSWERABLE, AnswerSet, Vocabulary, tokenize


def test_tokenize_and_vocabulary_round_trip() -> None:
    assert tokenize("What's the RED object?") == ["what", "s", "the", "red", "object"]
    vocab = Vocabulary.from_questions(["what colour is the disc ?", "where is the disc ?"])
    assert vocab.words[:2] == ["<pad>", "<unk>"] and vocab.words[2:5] == ["is", "the", "disc"]
    question = "where is the colour disc ?"
    assert vocab.decode(vocab.encode(question)) == " ".join(tokenize(question))
    assert vocab.encode("where is the zebra") == [vocab.ids["where"], 2, 3, 1]  # unknown -> 1
    padded = vocab.pad(["where is", "what colour is the disc"])
    assert padded.shape == (2, 5) and padded[0, 2:].eq(0).all()
    assert [vocab.decode(row.tolist()) for row in padded] == ["where is", "what colour is the disc"]
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["disc"])


def test_answers_are_classes_by_frequency() -> None:
    answers = AnswerSet.from_answers(["two", "Red.", "red", "disc", "red", "two"], max_answers=2)
    assert answers.answers == ["red", "two"]
    assert answers.index("RED") == 0 and answers.index("disc") == UNANSWERABLE


def _task_and_batch() -> tuple[VQATask, torch.Tensor, dict]:
    data = make_shape_qa(8, seed=0)
    task = VQATask()
    options = task.model_options(data)
    assert options == {"vocab_size": len(task.vocab), "num_answers": len(task.answer_set)}
    images, targets = task.collate([data[i] for i in range(6)])
    return task, images, targets


def test_collate_and_hard_loss() -> None:
    task, images, targets = _task_and_batch()
    assert images.shape == (6, 3, 64, 64) and images.dtype == torch.float32
    assert targets["questions"].shape[0] == 6 and targets["masks"].shape == (6, 64, 64)
    assert [task.answer_set[i] for i in targets["answer"]] == targets["answers_text"]
    logits = torch.randn(6, len(task.answer_set))
    expected = -sum(logits[i].log_softmax(0)[a] for i, a in enumerate(targets["answer"])) / 6
    step = task.loss(logits, targets)
    assert step.loss == pytest.approx(float(expected), rel=1e-5) and int(step.pixels) == 6
    assert (
        task.predict(F.one_hot(targets["answer"], len(task.answer_set)).float())
        == (targets["answers_text"])
    )


def test_soft_loss_follows_the_human_answers() -> None:
    task = VQATask(Vocabulary(["<pad>", "<unk>", "is"]), AnswerSet(["yes", "no", "two"]))
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    humans = ["yes"] * 2 + ["no"] * 8  # VQA scores: yes 0.6, no 1.0
    _, targets = task.collate([(image, {"question": "is", "answer": "no", "type": "yes/no",
                                        "answers": humans})])  # fmt: skip
    assert targets["soft"][0].tolist() == pytest.approx([0.6, 1.0, 0.0])
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    log_p = logits[0].log_softmax(0)
    expected = -(0.6 / 1.6 * log_p[0] + 1.0 / 1.6 * log_p[1])
    assert task.loss(logits, targets).loss == pytest.approx(float(expected), rel=1e-5)


def test_collate_refuses_mixed_sizes_without_image_size() -> None:
    task = VQATask(Vocabulary(["<pad>", "<unk>"]), AnswerSet(["a"]))
    items = [(torch.zeros(3, 8, 8, dtype=torch.uint8), {"question": "x", "answer": "a",
                                                        "type": "t"}),
             (torch.zeros(3, 9, 8, dtype=torch.uint8), {"question": "x", "answer": "a",
                                                        "type": "t"})]  # fmt: skip
    with pytest.raises(DataError, match="image_size"):
        task.collate(items)
    task.image_size = 16
    assert task.collate(items)[0].shape == (2, 3, 16, 16)


def test_training_lowers_the_loss_and_the_vocabulary_is_saved(tmp_path: Path) -> None:
    data = make_shape_qa(40, seed=1)
    options = {"width_mult": 0.25, "channels": 16}
    model, task, losses = train_vqa(data, steps=40, batch_size=16, lr=3e-3, model_options=options)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert first == pytest.approx(math.log(len(task.answer_set)), rel=0.25)  # near uniform
    loaded = VQATask.load(task.save(tmp_path / "vqa_vocab.json"))
    assert loaded.vocab.words == task.vocab.words
    assert loaded.answer_set.answers == task.answer_set.answers
    images = torch.stack([data[i][0] for i in range(3)])
    assert loaded.answer(model, images, data.questions[:3]) == task.answer(
        model, images, data.questions[:3]
    )
    (tmp_path / "bad.json").write_text(json.dumps({"words": ["x"]}))
    with pytest.raises(DataError, match="bad.json: not a saved VQA vocabulary"):
        VQATask.load(tmp_path / "bad.json")


def test_frozen_pretrained_features_stay_as_given() -> None:
    data = make_shape_qa(30, seed=2)
    options = {"width_mult": 0.25, "channels": 16}
    features, seg_losses = pretrain_features(data, steps=30, batch_size=8, lr=3e-3,
                                             model_options=options)  # fmt: skip
    assert sum(seg_losses[-5:]) < 0.7 * sum(seg_losses[:5]), seg_losses
    before = {k: v.clone() for k, v in features.backbone.state_dict().items()}
    model, task, losses = train_vqa(data, backbone=features.backbone, steps=8, batch_size=8,
                                 model_options=options)  # fmt: skip
    assert model.freeze_backbone and model.train().backbone.training is False
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert model.kernels.weight.requires_grad and losses[0] != losses[-1]
    # training used the backbone's maps computed once per scene: the same answers as images
    images, targets = task.collate([data[i] for i in range(6)])
    with torch.no_grad():
        maps = model.backbone(images)["out"]
        direct = model(images, targets["questions"])
        cached = model.head(model.encode(maps), targets["questions"])
    torch.testing.assert_close(cached, direct)


def test_registered_and_recipe_problems() -> None:
    assert TASKS["vqa"] is VQATask and VQATask.main_metric == "accuracy"
    assert "vqa" in DEMOS
    from atrous.config import load_config

    with pytest.raises(ConfigError, match="task: vqa trains model.name = abc_cnn"):
        load_config(None, ["task=vqa"])


def test_demo_smoke(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_vqa_demo(out, steps=6, feature_steps=3, num_train=20, num_val=12,
                          progress=False)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["attention_iou"] <= 1
    assert 0 <= metrics["feature_miou"] <= 1
    assert set(metrics["per_type"]) == {"object", "colour", "count", "location"}
    assert (out / "attention.png").is_file() and (out / "vqa_vocab.json").is_file()
    assert "attention IoU" in vqa_report(result, out)
    with pytest.raises(ConfigError, match="earlier run"):
        run_vqa_demo(out, steps=1, num_train=4, num_val=4, progress=False)
