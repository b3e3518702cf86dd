from pathlib import Path

import pytest

from atrous.config import Config, from_dict, load_config, to_dict
from atrous.demo import demo_config
from atrous.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_deeplab_recipe():
    cfg = Config()
    assert cfg.data.crop_size == 513 and cfg.data.scale_range == (0.5, 2.0)
    assert cfg.data.scale_step == 0.0  # continuous: the quality ablation's gain
    assert cfg.train.momentum == 0.9 and cfg.train.poly_power == 0.9
    assert cfg.train.lr == 0.007 and cfg.train.batch_size == 8
    assert cfg.model.output_stride == 16


def test_yaml_and_overrides(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  root: /data\n  crop_size: 321\ntrain:\n  lr: 1e-3\n  steps: 10\n")
    cfg = load_config(
        path,
        [
            "train.steps=20",
            "data.scale_range=[0.75, 1.25]",
            "data.val_split=null",
            "train.weight_decay=1e-4",
        ],
    )
    assert cfg.data.root == "/data" and cfg.data.crop_size == 321
    assert cfg.train.lr == 1e-3 and cfg.train.steps == 20
    assert cfg.data.scale_range == (0.75, 1.25) and cfg.data.val_split is None
    assert cfg.train.weight_decay == 1e-4
    assert from_dict(to_dict(cfg)) == cfg


def test_unknown_keys_are_named(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'train\.learning_rate'"):
        load_config(path)
    path.write_text("solver:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'solver'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown key 'model\.depth'"):
        load_config(None, ["model.depth=3"])


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"train\.steps = 'many' is not a valid int"):
        load_config(None, ["train.steps=many"])
    with pytest.raises(ConfigError, match=r"data\.hflip"):
        load_config(None, ["data.hflip=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.steps"])


def test_recipes_load_and_the_demo_recipe_matches_the_demo():
    recipes = sorted((REPO / "configs").rglob("*.yaml"))
    assert recipes
    for recipe in recipes:
        load_config(recipe)
    shipped = load_config(
        REPO / "configs/synthetic/deeplabv3plus_mobilenetv2_os16_96_2500.yaml",
        ["data.root=atrous-demo/data", "train.out_dir=atrous-demo"],
    )
    assert shipped == demo_config("atrous-demo")


def test_model_options_are_the_builders_keyword_arguments(tmp_path):
    cfg = load_config(None, ["model.name=mobile_deeplabv3"])
    assert cfg.model.builder_kwargs() == {}  # every option at the builder's default
    with pytest.raises(ConfigError, match="--set model.channels=64: unknown key 'model.channels'"):
        load_config(None, ["model.name=mobile_deeplabv3", "model.channels=64"])
    cfg = load_config(
        None, ["model.name=deeplabv3", "model.backbone=resnet50", "model.multi_grid=[1, 2, 4]"]
    )
    assert cfg.model.builder_kwargs()["multi_grid"] == (1, 2, 4)
    # Options ModelConfig never listed are reachable now, type-checked from the builder.
    cfg = load_config(None, ["model.name=deeplabv3", "model.extra_blocks=2"])
    assert cfg.model.extra_blocks == 2 and cfg.model.backbone == "resnet101"
    cfg = load_config(None, ["model.separable=false"])
    assert cfg.model.builder_kwargs() == {"separable": False}
    with pytest.raises(ConfigError, match="model.extra_blocks = 'two' is not a valid int"):
        load_config(None, ["model.name=deeplabv3", "model.extra_blocks=two"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: deeplabv3plus\n  blocks: 3\n")
    with pytest.raises(ConfigError, match=f"{recipe}: unknown key 'model.blocks'"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="model.num_classes comes from the data set"):
        load_config(None, ["model.num_classes=3"])
