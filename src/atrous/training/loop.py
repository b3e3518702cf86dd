"""The training loop: SGD + poly LR on cross-entropy, checkpoints, exact resume, evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..config import Config, to_dict
from ..data import build_dataset, train_transforms
from ..errors import AtrousError, ConfigError
from ..inference import Predictor, resolve_device
from ..metrics import format_table, write_json
from ..models import build_model
from .evaluate import evaluate
from .losses import mining_fraction, segmentation_loss
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


def _param_groups(
    model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Backbone and head parameters at ``lr`` and ``lr * head_lr_mult``; weight decay on
    conv/linear weights only, not BN or biases, as the TF reference's regularizers do."""
    groups = []
    for part, mult in (("backbone", 1.0), ("head", head_lr_mult)):
        params = [
            p
            for name, p in model.named_parameters()
            if p.requires_grad and name.startswith("backbone.") == (part == "backbone")
        ]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                groups.append(
                    {"params": chosen, "lr": lr * mult, "weight_decay": weight_decay * decay}
                )
    return groups


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep every BN layer on its running statistics with fixed scale and shift (the TF
    reference's ``fine_tune_batch_norm=False``): the fallback for small batches."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.requires_grad_(False)


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
    if t.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = t.bn_momentum
    if t.freeze_bn:
        freeze_batchnorm(model)
    groups = _param_groups(model, t.lr, t.weight_decay, t.head_lr_mult)
    optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    scheduler = poly_lr(optimizer, t.steps, t.poly_power, t.warmup_steps)

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
        sampler=_StepSampler(len(train_set), t.seed, start * t.batch_size * t.accumulate),
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # keep the loader's seed draw off the global RNG we resume
    )
    losses: list[float] = []
    model.train()
    if t.freeze_bn:
        freeze_batchnorm(model)
    batches = iter(loader)
    bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", disable=not progress)
    for step in range(start, t.steps):
        top_k = mining_fraction(step, t.top_k_percent, t.hard_mining_steps)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(t.accumulate):  # micro-batches: gradients add up to one step
            images, masks = next(batches)
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            loss = segmentation_loss(
                model(images), masks, top_k_percent=top_k, class_weights=t.class_weights
            )
            (loss / t.accumulate).backward()
            total += loss.item() / t.accumulate
        if not math.isfinite(total):
            raise AtrousError(f"loss became {total} at step {step}; lower train.lr")
        if t.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(total)
        bar.update()
        bar.set_postfix(loss=f"{total:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
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
