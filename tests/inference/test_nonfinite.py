"""No metric from NaN without saying so (#28): checkpoints whose weights hold NaN are refused
where they are loaded; evaluation marks images whose scores hold NaN; the eval report's path is
checked before the evaluation runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from atrous.errors import CheckpointError, ConfigError
from atrous.evaluation import evaluate_checkpoint, format_table
from atrous.inference import Predictor
from atrous.loader import load


def _nan_copy(checkpoint: Path, out: Path, key_part: str) -> tuple[Path, str]:
    state = torch.load(checkpoint, weights_only=True)
    name = next(k for k in state["model"] if key_part in k)
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, out)
    return out, name


def test_a_checkpoint_with_nan_weights_or_bn_statistics_is_refused(tiny_checkpoint, tmp_path):
    for part in ("weight", "running_var"):
        path, name = _nan_copy(tiny_checkpoint, tmp_path / f"nan_{part}.pt", part)
        expected = rf"nan_{part}\.pt: 1 tensor\(s\) hold NaN.*{name}"
        with pytest.raises(CheckpointError, match=expected):
            load(path, checkpoint_only=True)
        with pytest.raises(CheckpointError, match="hold NaN"):
            Predictor.from_checkpoint(path)


class _NanOnFirst(nn.Module):
    """The model, with NaN scores on the first image it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(x)
        return out * float("nan") if self.calls == 1 else out


def test_evaluation_marks_images_with_nan_scores(tiny_checkpoint, tiny_data, tmp_path):
    loaded = load(tiny_checkpoint, checkpoint_only=True)
    clean, classes = evaluate_checkpoint(loaded, tiny_data, device="cpu", progress=False)
    assert "nonfinite_scores" not in clean and "WARNING" not in format_table(clean, classes)
    nan = dataclasses.replace(loaded, model=_NanOnFirst(loaded.model))
    result, classes = evaluate_checkpoint(nan, tiny_data, device="cpu", progress=False)
    assert result["nonfinite_scores"]["images"] == 1
    assert format_table(result, classes).startswith("WARNING: the model's scores hold NaN")


def test_the_report_path_is_checked_before_the_evaluation(tiny_checkpoint, tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        evaluate_checkpoint(tiny_checkpoint, tiny_data, out=blocker / "eval.json", progress=False)
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"mine": 1}))
    with pytest.raises(ConfigError, match="not a file this command wrote"):
        evaluate_checkpoint(tiny_checkpoint, tiny_data, out=notes, progress=False)
    earlier = tmp_path / "eval_val.json"
    earlier.write_text(json.dumps({"miou": 0.5, "confusion_matrix": [[1]]}))
    result, _ = evaluate_checkpoint(
        tiny_checkpoint, tiny_data, out=earlier, device="cpu", progress=False
    )
    assert "miou" in result
