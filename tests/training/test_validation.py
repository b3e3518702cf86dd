"""Validation while training: a curve in the log (JSONL and TensorBoard), best.pt holding the
best logged value, early stopping, and all of it carried through an exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atrous.checkpoint import load_checkpoint
from atrous.errors import ConfigError
from atrous.training import train
from atrous.training.validation import metric_value
from tests.conftest import tiny_config, train_killed_after_first_checkpoint


def _evals(out: Path) -> list[dict]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval" in r]


def test_eval_every_writes_a_curve_and_best_pt_holds_the_best(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=6", "train.eval_every=2")
    result = train(cfg, progress=False)
    evals = _evals(tmp_path)
    assert [r["step"] for r in evals] == [2, 4, 6]  # 6: the final evaluation
    assert all(r["eval_seconds"] > 0 and len(r["eval"]["iou"]) == 5 for r in evals)
    values = [r["eval"]["miou"] for r in evals]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best"]["value"] == pytest.approx(max(values))
    assert best["best"]["step"] == evals[values.index(max(values))]["step"]
    assert best["metrics"]["miou"] == pytest.approx(max(values))
    assert [r["best"] for r in evals].count(True) >= 1
    assert result["metrics"]["miou"] == pytest.approx(values[-1])
    if (tmp_path / "tensorboard").is_dir():  # tensorboard installed: the curve is there too
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
        assert [e.step for e in events.Scalars("val/miou")] == [2, 4, 6]


def test_early_stop_after_evaluations_without_a_gain(tiny_data: Path, tmp_path: Path):
    # a negligible LR and frozen BN: the model does not change, so no evaluation after the
    # first can be better (a gain must be strictly greater)
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=20", "train.eval_every=2",
                      "train.early_stop=2", "train.lr=1e-12", "train.freeze_bn=true")  # fmt: skip
    result = train(cfg, progress=False)
    assert len(result["losses"]) == 6  # evaluations at 2 (best), 4, 6: two without a gain
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6
    assert [r["step"] for r in _evals(tmp_path)] == [2, 4, 6, 6]
    assert load_checkpoint(tmp_path / "best.pt")["best"]["step"] == 2


def test_validation_state_survives_an_exact_resume(tiny_data: Path, tmp_path: Path, monkeypatch):
    common = ("train.steps=6", "train.eval_every=2", "train.checkpoint_every=3")
    whole = train(tiny_config(tiny_data, tmp_path / "a", *common), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "b", *common)
    train_killed_after_first_checkpoint(cfg, monkeypatch)
    resumed = train(cfg, resume=True, progress=False)
    assert resumed["losses"] == whole["losses"][3:]
    a, b = (load_checkpoint(tmp_path / d / "best.pt") for d in "ab")
    assert a["best"] == b["best"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_best_metric_reaches_into_sections_and_is_checked(tiny_data: Path, tmp_path: Path):
    assert metric_value({"panoptic": {"pq": 0.5}}, "panoptic.pq") == 0.5
    with pytest.raises(ConfigError, match="train.best_metric = 'pq' is not in"):
        metric_value({"miou": 0.3, "panoptic": {"pq": 0.5}}, "pq")
    with pytest.raises(ConfigError, match="early_stop needs train.eval_every"):
        tiny_config(tiny_data, tmp_path, "train.early_stop=2")


def test_a_card_from_a_run_with_eval_every_takes_its_best_logged_metrics(
    tiny_data: Path, tmp_path: Path
):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import ModelCard

    from atrous.loader import load
    from atrous.models import metrics_from_run, save_pretrained

    cfg = tiny_config(tiny_data, tmp_path / "run", "train.steps=4", "train.eval_every=2")
    train(cfg, progress=False)
    best = load_checkpoint(tmp_path / "run" / "best.pt")["best"]
    loaded = load(tmp_path / "run" / "best.pt", checkpoint_only=True)
    out = save_pretrained(
        loaded.model, tmp_path / "card", spec=loaded.spec, classes=loaded.info.classes,
        **metrics_from_run(tmp_path / "run"),
    )  # fmt: skip
    card = ModelCard.load(Path(out) / "README.md")
    assert card.data.library_name == "atrous"
    values = [r.metric_value for r in card.data.eval_results]
    assert values[0] == pytest.approx(100 * best["value"], abs=0.01)


def test_train_compile_compiles_the_training_forward(tiny_data: Path, tmp_path: Path, monkeypatch):
    import atrous.training.setup as setup

    compiled = []

    def record(module):  # stands in for torch.compile, whose first call takes minutes on a CPU
        compiled.append(module)
        return module

    monkeypatch.setattr(setup.torch, "compile", record)
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=1", "train.compile=true",
                      "data.val_split=null")  # fmt: skip
    train(cfg, progress=False)
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    compiled.clear()
    train(tiny_config(tiny_data, tmp_path / "eager", "train.steps=1", "data.val_split=null"),
          progress=False)  # fmt: skip
    assert compiled == []  # off by default
