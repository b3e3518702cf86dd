"""Every recipe under configs/ loads, builds its model, and (paper recipes) cites a result."""

import inspect
import re
from itertools import takewhile
from pathlib import Path

import pytest
import torch

from atrous.config import load_config
from atrous.models import MODELS, build_model

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").rglob("*.yaml"))
PAPER_DATASETS = {"voc": 21, "cityscapes": 19, "ade20k": 150, "person_part": 7}
"""Recipe folders that hold paper recipes, and their datasets' class counts."""


def _name(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


def _num_classes(path: Path, data_num_classes: int | None) -> int:
    return PAPER_DATASETS.get(path.parent.name) or data_num_classes or 21


def _header(path: Path) -> str:
    """The comment lines at the top of a recipe."""
    lines = path.read_text().splitlines()
    return "\n".join(takewhile(lambda line: line.startswith("#"), lines))


def test_recipes_exist():
    names = {_name(p) for p in RECIPES}
    assert "voc/deeplabv3plus_xception65_os16_513_30k.yaml" in names
    assert "cityscapes/deeplabv3plus_xception65_os16_769_90k.yaml" in names


@pytest.mark.parametrize("path", RECIPES, ids=_name)
def test_recipe_loads_and_builds(path: Path):
    cfg = load_config(path)  # unknown keys and wrong types raise ConfigError
    name = path.stem
    if "search:" not in path.read_text():  # search recipes are named for what they search
        assert f"_os{cfg.model.output_stride}_{cfg.data.crop_size}_" in name, "name mismatch"
    if path.parent.name in PAPER_DATASETS:
        assert cfg.data.dataset == path.parent.name
    num_classes = _num_classes(path, cfg.data.num_classes)
    if cfg.model.name == "personlab":  # person / background, whatever the data set
        num_classes = 2
    kwargs = cfg.model.builder_kwargs()
    if "backbone_weights" in inspect.signature(MODELS[cfg.model.name]).parameters:
        kwargs["backbone_weights"] = None  # no download in tests
    model = build_model(cfg.model.name, num_classes=num_classes, **kwargs)
    with torch.no_grad():
        logits = model.eval()(torch.zeros(1, 3, 33, 33))
    if isinstance(logits, dict):  # a model of several fields (PersonLab) has semantic logits
        logits = logits["semantic"]
    assert logits.shape == (1, num_classes, 33, 33)


@pytest.mark.parametrize("path", [p for p in RECIPES if p.parent.name in PAPER_DATASETS], ids=_name)
def test_paper_recipe_cites_a_result(path: Path):
    header = _header(path)
    assert "atrous train --config" in header
    assert re.search(r"\b\d{2}\.\d{1,2}\b", header), f"{path}: no reported mIoU in the header"
