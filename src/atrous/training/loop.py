"""The training loop: SGD + poly LR on cross-entropy, checkpoints, exact resume, evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..config import Config, to_dict
from ..data import IGNORE_INDEX, build_dataset, train_transforms
from ..errors import AtrousError, ConfigError
from ..inference import Predictor, resolve_device
from ..metrics import format_table, write_json
from ..models import build_model
from .evaluate import evaluate
from .schedules import poly_lr

CHECKPOINT_NAME = "checkpoint.pt"


class _StepSampler(Sampler[tuple[int, int]]):
    """Endless shuffled ``(index, augmentation seed)`` pairs, starting at sample ``start``.

    Epoch ``e``'s order and seeds come from ``(seed, e)`` alone, so a run resumed at any step
    sees exactly the samples and augmentations an uninterrupted run would, with any number of
    loader workers.
    """

    def __init__(self, size: int, seed: int, start: int = 0) -> None:
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.size)
        while True:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
            seeds = torch.randint(2**62, (self.size,), generator=generator).tolist()
            yield from zip(order[offset:], seeds[offset:], strict=True)
            epoch, offset = epoch + 1, 0


class _SeededItems(Dataset):
    """Reads item ``index`` with the global torch RNG seeded for its transforms."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay conv/linear weights only, not BN or biases, as the TF reference's regularizers do.
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _training_state(
    step: int, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler, device: torch.device
) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
    }


def _restore(
    path: Path, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler, device: torch.device
) -> int:
    """Load what :func:`_training_state` saved; returns the step to continue from."""
    state = load_checkpoint(path)
    load_model_state(model, state["model"], path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` for ``cfg.train.steps`` steps.

    Writes ``checkpoint.pt`` to ``cfg.train.out_dir`` every ``checkpoint_every`` steps and at
    the end, then evaluates on ``cfg.data.val_split`` (if set) into ``metrics.json``.
    ``resume=True`` continues from that checkpoint: same weights, optimizer, LR position, RNG.
    Returns ``{"checkpoint": path, "metrics": dict or None, "losses": [per-step loss]}``.
    """
    d, t = cfg.data, cfg.train
    out = Path(t.out_dir)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    transforms = train_transforms(
        d.crop_size,
        mean=d.mean,
        std=d.std,
        scale_range=d.scale_range,
        scale_step=d.scale_step,
        hflip=d.hflip,
    )
    options = {} if d.num_classes is None else {"num_classes": d.num_classes}
    train_set = build_dataset(d.dataset, d.root, d.train_split, transforms, **options)
    spec = {
        "name": cfg.model.name,
        "kwargs": {**cfg.model.builder_kwargs(), "num_classes": train_set.num_classes},
    }
    # Check the validation split now, not after hours of training.
    val_set = build_dataset(d.dataset, d.root, d.val_split, **options) if d.val_split else None
    try:
        model = build_model(spec["name"], **spec["kwargs"]).to(device)
    except (TypeError, ValueError) as err:  # a builder rejecting a model.* option
        raise ConfigError(f"model: {err}") from None
    optimizer = torch.optim.SGD(_param_groups(model, t.weight_decay), lr=t.lr, momentum=t.momentum)
    scheduler = poly_lr(optimizer, t.steps, t.poly_power)

    ckpt_path = out / CHECKPOINT_NAME
    start = _restore(ckpt_path, model, optimizer, scheduler, device) if resume else 0

    def snapshot(step: int) -> dict[str, Any]:
        return {
            **_training_state(step, model, optimizer, scheduler, device),
            "config": to_dict(cfg),
            "model_spec": spec,
            "classes": list(train_set.classes),
            "palette": train_set.palette.tolist(),
            "mean": list(d.mean),
            "std": list(d.std),
        }

    loader = DataLoader(
        _SeededItems(train_set),
        batch_size=t.batch_size,
        num_workers=d.num_workers,
        sampler=_StepSampler(len(train_set), t.seed, start * t.batch_size),
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # keep the loader's seed draw off the global RNG we resume
    )
    losses: list[float] = []
    model.train()
    bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", disable=not progress)
    for step, (images, masks) in zip(range(start, t.steps), loader, strict=False):
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), masks, ignore_index=IGNORE_INDEX)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise AtrousError(f"loss became {losses[-1]} at step {step}; lower train.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps:
            save_checkpoint(ckpt_path, snapshot(step + 1))
    bar.close()

    metrics = None
    if val_set is not None:
        predictor = Predictor(model, mean=d.mean, std=d.std, device=device, info=train_set.info)
        metrics = evaluate(predictor, val_set, train_set.num_classes, progress=progress).compute()
        write_json(
            out / "metrics.json",
            metrics,
            classes=list(train_set.classes),
            split=d.val_split,
            step=t.steps,
        )
        if progress:
            print(format_table(metrics, train_set.classes))
    return {"checkpoint": ckpt_path, "metrics": metrics, "losses": losses}
