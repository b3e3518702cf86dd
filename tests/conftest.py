"""Shared fixtures: a tiny synthetic data folder and a tiny trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.config import Config, load_config
from atrous.data import make_synthetic_dataset

torch.set_num_threads(2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests need CUDA: skipped (with the reason) on machines without it."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train + 3 val synthetic scenes, 48-72 px."""
    root = tmp_path_factory.mktemp("tiny_data")
    return make_synthetic_dataset(root, num_train=8, num_val=3, size_range=(48, 72), seed=1)


def tiny_config(data: Path, out: Path, *extra: str) -> Config:
    """A small, fast recipe: narrow DeepLabv3+ MobileNetV2, crop 48, batch 2, no workers."""
    return load_config(
        None,
        [
            f"data.root={data}",
            "data.crop_size=48",
            "data.num_workers=0",
            "model.width_mult=0.25",
            "model.channels=16",
            "train.batch_size=2",
            "train.lr=0.02",
            f"train.out_dir={out}",
            *extra,
        ],
    )


def train_killed_after_first_checkpoint(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``train(cfg)`` and stop it (KeyboardInterrupt) right after its first checkpoint."""
    import atrous.training.loop as loop
    from atrous.training import train

    save = loop.save_checkpoint

    def save_then_die(path, state):
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", save)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from atrous.training import train

    out = tmp_path_factory.mktemp("tiny_run")
    return train(tiny_config(tiny_data, out, "train.steps=3"), progress=False)["checkpoint"]
