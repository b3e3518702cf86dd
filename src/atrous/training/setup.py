"""A training run's set-up: data, model, task, solver (restored when resuming) and the
data-parallel wrapper, held in one :class:`Run` record."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset

from ..config import Config, model_spec, task_of, to_dict
from ..data import build_dataset, train_transforms
from ..errors import AtrousError, ConfigError
from ..models.heads.aspp import rates_past_crop
from ..models.spec import ModelSpec
from ..tasks import Task
from .distributed import WorldInfo
from .optim import freeze_batchnorm, param_groups, resolve_amp
from .sampler import SeededItems, StepSampler
from .schedules import poly_lr
from .state import restore, training_state
from .validation import Validation

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class Run:
    """Everything a training run holds between set-up, the step loop and the evaluation."""

    cfg: Config
    task: Task
    world: WorldInfo
    device: torch.device
    train_set: Any
    val_set: Any
    spec: ModelSpec
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    start: int
    checkpoint: Path
    amp: str  # the mixed precision that runs: "none", "bf16" or "fp16" ("auto" resolved)
    validation: Any = None  # the Validation state (best value, evaluations without a gain)
    step: int = 0  # the last step done

    def snapshot(self, step: int) -> dict[str, Any]:
        """The checkpoint at ``step``: the training state, the recipe and what inference needs."""
        d = self.cfg.data
        return {
            **training_state(
                step, self.model, self.optimizer, self.scheduler, self.scaler, self.device
            ),
            "config": to_dict(self.cfg),
            "model_spec": self.spec.without_downloads().to_dict(),  # its weights overwrite them
            "classes": list(self.train_set.classes),
            "palette": self.train_set.palette.tolist(),
            "mean": list(d.mean),
            "std": list(d.std),
            "validation": self.validation.state() if self.validation is not None else None,
        }


def setup(
    cfg: Config, world: WorldInfo, device: torch.device, *, resume: bool, progress: bool
) -> Run:
    """Data, model, task, solver (restored when resuming) and the data-parallel wrapper."""
    t = cfg.train
    task = task_of(cfg)
    torch.manual_seed(t.seed)
    train_set, val_set = datasets(cfg, task, progress=progress)
    spec = model_spec(cfg, train_set.num_classes, task.model_options(train_set))
    model = spec.build()  # with the published weights the recipe asks for (downloaded)
    task.bind(model)
    for problem in rates_past_crop(model, cfg.data.crop_size):
        warnings.warn(problem, stacklevel=3)
    if world.distributed and device.type == "cuda":  # Gloo/CPU has no SyncBatchNorm
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if t.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = t.bn_momentum
    if t.freeze_bn:  # before the parameter groups, which then leave BN's affine terms out
        freeze_batchnorm(model)
    optimizer = build_optimizer(cfg, model)
    scheduler = poly_lr(optimizer, t.steps, t.poly_power, t.warmup_steps)
    amp = resolve_amp(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    checkpoint = Path(t.out_dir) / CHECKPOINT_NAME
    if resume and not checkpoint.is_file():  # rank 0 resumes, this node cannot see its file
        raise ConfigError(
            f"{checkpoint}: rank {world.rank} cannot read the checkpoint rank 0 resumes from; "
            "train.out_dir must be on a file system every node shares"
        )
    saved = restore(checkpoint, model, optimizer, scheduler, scaler, device) if resume else {}
    net: nn.Module = model
    if world.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    if t.compile:  # the training forward only; checkpoints and evaluation use the model itself
        net = torch.compile(net)
    run = Run(
        cfg, task, world, device, train_set, val_set, spec, model, net,
        optimizer, scheduler, scaler, int(saved.get("step", 0)), checkpoint, amp,
    )  # fmt: skip
    run.validation = Validation(run, saved.get("validation"))
    return run


def datasets(cfg: Config, task: Task, *, progress: bool) -> tuple[Dataset, Dataset | None]:
    """The augmented training split (as the task reads it) and the validation split, checked
    up front rather than after hours of training."""
    d = cfg.data
    transforms = train_transforms(
        d.crop_size, mean=d.mean, std=d.std, scale_range=d.scale_range,
        scale_step=d.scale_step, hflip=d.hflip,
    )  # fmt: skip
    options: dict[str, Any] = {} if d.num_classes is None else {"num_classes": d.num_classes}
    if d.dataset in ("folder", "panoptic_folder"):
        options["val_fraction"] = d.val_fraction
    train_set = task.train_dataset(cfg, transforms, options)
    val_set = build_dataset(d.dataset, d.root, d.val_split, **options) if d.val_split else None
    for split in (train_set, val_set):
        held_out = getattr(split, "held_out", None)
        if held_out and progress:
            print(held_out)
    return train_set, val_set


def build_optimizer(cfg: Config, model: nn.Module) -> Optimizer:
    """SGD with momentum (DeepLab) or Adam (Panoptic-DeepLab) over the parameter groups."""
    t = cfg.train
    groups = param_groups(model, t.lr, t.weight_decay, t.head_lr_mult)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr)
    raise ConfigError(f"train.optimizer = {t.optimizer!r}: expected 'sgd' or 'adam'")


def batches(run: Run) -> Any:
    """The endless batch stream from step ``run.start`` on (exact resume, any worker count)."""
    t, d = run.cfg.train, run.cfg.data
    sampler = StepSampler(
        len(run.train_set),
        t.seed,
        run.start * t.batch_size * t.accumulate * run.world.world_size,
        rank=run.world.rank,
        world_size=run.world.world_size,
        batch_size=t.batch_size,
    )
    loader = DataLoader(
        SeededItems(run.train_set),
        batch_size=t.batch_size,
        num_workers=d.num_workers,
        sampler=sampler,
        pin_memory=run.device.type == "cuda",
        collate_fn=run.task.collate,
        generator=torch.Generator(),  # keep the loader's seed draw off the global RNG we resume
    )
    return _errors_in_one_line(iter(loader))


def _errors_in_one_line(batches: Iterator[Any]) -> Iterator[Any]:
    """The loader's batches; an atrous error raised in a worker process reaches the caller as
    itself (one line naming the file), not wrapped in the worker's traceback."""
    while True:
        try:
            batch = next(batches)
        except AtrousError as err:
            raise type(err)(_worker_message(str(err))) from None
        yield batch


def _worker_message(text: str) -> str:
    """The original message inside torch's "Caught X in DataLoader worker process N" text."""
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    _, sep, message = last.partition(": ")  # "atrous.errors.DataError: <message>"
    return message if sep else last
