"""A recipe names its task (``task:``); one that contradicts its model or data is one error
naming the recipe file, and recipes written before the key keep training what they trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from atrous.config import from_dict, load_config, to_dict
from atrous.errors import ConfigError
from atrous.tasks import TASKS, PanopticTask, SemanticTask, WeakTask


def _recipe(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def test_the_tasks_are_registered_by_name():
    assert {"semantic", "weak", "panoptic"} <= set(TASKS)
    assert all(TASKS[name].name == name for name in TASKS)
    assert (
        TASKS["panoptic"].main_metric == "panoptic.pq" and TASKS["semantic"].main_metric == "miou"
    )


def test_default_and_legacy_recipes_resolve_their_task(tmp_path: Path):
    assert load_config(None).task == "semantic"
    weak = _recipe(tmp_path, data={"supervision": "boxes", "boxes": "b.json"})
    assert load_config(weak).task == "weak"
    panoptic = _recipe(
        tmp_path, data={"dataset": "panoptic_folder"}, model={"name": "panoptic_deeplab"}
    )
    cfg = load_config(panoptic)
    assert cfg.task == "panoptic"
    assert to_dict(cfg)["task"] == "panoptic" and from_dict(to_dict(cfg)).task == "panoptic"


@pytest.mark.parametrize(
    "sections, problem",
    [
        ({"task": "panoptic"}, "task: panoptic trains model.name = panoptic_deeplab"),
        ({"task": "weak"}, "task: weak needs data.supervision"),
        (
            {"task": "semantic", "model": {"name": "panoptic_deeplab"}},
            "panoptic_deeplab trains with task: panoptic",
        ),
        ({"task": "semantic", "data": {"supervision": "boxes"}}, "trains with task: weak"),
        ({"task": "keypoints"}, "'keypoints' is not a task; available: semantic, weak"),
    ],
)
def test_a_contradiction_is_one_error_naming_the_recipe(tmp_path: Path, sections, problem):
    path = _recipe(tmp_path, **sections)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and problem in str(err.value)


def test_set_overrides_are_checked_too(tmp_path: Path):
    with pytest.raises(ConfigError, match="--set|config"):
        load_config(None, ["task=panoptic"])


def test_tasks_split_targets_and_score_what_they_own():
    mask = torch.tensor([[[1, 2], [255, 0]], [[3, 0], [0, 1]]])
    semantic, whole = PanopticTask().split_target(mask)
    assert torch.equal(semantic, mask[0]) and whole is mask
    plain = mask[0]
    semantic, whole = SemanticTask().split_target(plain)
    assert semantic is plain and whole is plain
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    target = torch.tensor([[[0, 1], [2, 255]]])
    step = SemanticTask().loss(logits, target)
    assert int(step.pixels) == 3
    assert step.loss.item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
    assert isinstance(WeakTask(), SemanticTask)  # weak labels are scored as semantic ones
