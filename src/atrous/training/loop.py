"""The training loop: SGD + poly LR on cross-entropy, checkpoints, exact resume, evaluation.

Launched by ``torchrun --nproc_per_node N -m atrous train ...`` the same loop runs data-parallel
(:mod:`.distributed`): ``train.batch_size`` is per process, each rank takes its share of every
global batch of ``batch_size x N`` samples (the same samples, in the same order and with the same
augmentations, as one process with that batch), gradients are averaged by
``DistributedDataParallel``, BN becomes ``SyncBatchNorm`` on GPUs (on CPU/Gloo, where PyTorch
has no SyncBatchNorm, each process keeps BN statistics over its own share; ``train.freeze_bn``
removes the difference), and rank 0 alone writes checkpoints, metrics and logs. Each rank's
loss is weighted by its share of the global batch's pixels, so the step equals one process's;
only hard-pixel mining (``train.top_k_percent``) ranks pixels within each process's share.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..config import Config, model_spec, to_dict
from ..data import build_dataset, train_transforms
from ..data.info import IGNORE_INDEX
from ..errors import AtrousError, ConfigError
from ..inference import Predictor, resolve_device
from ..metrics import format_table, write_json
from .distributed import (
    WorldInfo,
    all_reduce_sum,
    barrier,
    cleanup,
    global_mean,
    init_distributed,
)
from .evaluate import evaluate
from .losses import kept_pixel_count, mining_fraction, segmentation_loss
from .schedules import poly_lr

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"
_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _StepSampler(Sampler[tuple[int, int]]):
    """Endless shuffled ``(index, augmentation seed)`` pairs, starting at global sample ``start``.

    Epoch ``e``'s order and seeds come from ``(seed, e)`` alone, so a run resumed at any step
    sees exactly the samples and augmentations an uninterrupted run would, with any number of
    loader workers. With ``world_size > 1`` the global stream is cut into batches of
    ``batch_size x world_size`` and ``rank`` keeps its ``batch_size`` slice of each one.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        start: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
    ) -> None:
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.size)
        block, low = self.batch_size * self.world_size, self.rank * self.batch_size
        position = self.start
        while True:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
            seeds = torch.randint(2**62, (self.size,), generator=generator).tolist()
            for pair in zip(order[offset:], seeds[offset:], strict=True):
                if low <= position % block < low + self.batch_size:
                    yield pair
                position += 1
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


def _in_backbone(name: str) -> bool:
    """``backbone.*``, also inside a wrapper (e.g. DT-EdgeNet's ``model.backbone.*``)."""
    return name.startswith("backbone.") or ".backbone." in name


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
            if p.requires_grad and _in_backbone(name) == (part == "backbone")
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
    step: int,
    model: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),  # empty unless fp16
        "rng": rng,
    }


def _restore(
    path: Path,
    model: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> int:
    """Load what :func:`_training_state` saved; returns the step to continue from."""
    state = load_checkpoint(path)
    load_model_state(model, state["model"], path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def _check_amp(amp: str, device: torch.device) -> None:
    if amp not in _AMP_DTYPES:
        raise ConfigError(f"train.amp = {amp!r}: expected one of {', '.join(_AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.amp = 'fp16' needs a CUDA device, but training runs on {device.type}: "
            "use train.amp=bf16 on CPU, or train.amp=none"
        )


def _autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = _AMP_DTYPES[amp]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _nan_to_none(value: Any) -> Any:
    """Strict JSON: NaN (a class absent from the metrics) becomes null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


class _RunLog:
    """``train_log.jsonl`` (a JSON object per logged step, then the evaluation) and TensorBoard
    scalars when ``torch.utils.tensorboard`` imports (it needs the optional ``tensorboard``)."""

    def __init__(self, out: Path, start: int, enabled: bool) -> None:
        self.path, self.enabled, self.board = out / LOG_NAME, enabled, None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        kept = []
        if start and self.path.is_file():  # resuming: drop what came after the checkpoint
            records = [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
            kept = [r for r in records if "eval" not in r and r.get("step", 0) <= start]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # no tensorboard package: the JSON log alone
            return
        self.board = SummaryWriter(str(out / "tensorboard"), purge_step=start or None)

    def write(self, record: dict[str, Any], **scalars: float) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as file:
            file.write(json.dumps(_nan_to_none(record)) + "\n")
        if self.board is not None:
            for name, value in scalars.items():
                self.board.add_scalar(name, value, record["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` for ``cfg.train.steps`` steps.

    Writes ``checkpoint.pt`` to ``cfg.train.out_dir`` every ``checkpoint_every`` steps and at
    the end, logs to ``train_log.jsonl`` (and TensorBoard if installed), then evaluates on
    ``cfg.data.val_split`` (if set) into ``metrics.json``. ``resume=True`` continues from that
    checkpoint: same weights, optimizer, LR position, loss scale, RNG. Under ``torchrun`` it
    runs data-parallel (see the module docstring). Returns ``{"checkpoint": path, "metrics":
    dict or None, "losses": [per-step loss over the global batch]}``.
    """
    device = resolve_device(cfg.train.device)
    _check_amp(cfg.train.amp, device)
    if cfg.train.log_every < 1:
        raise ConfigError(f"train.log_every = {cfg.train.log_every}: must be 1 or more steps")
    world, device = init_distributed(device)
    try:
        return _train(cfg, world, device, resume=resume, progress=progress and world.is_main)
    finally:
        cleanup(world)


def _train(
    cfg: Config, world: WorldInfo, device: torch.device, *, resume: bool, progress: bool
) -> dict[str, Any]:
    d, t = cfg.data, cfg.train
    out = Path(t.out_dir)
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
    spec = model_spec(cfg, train_set.num_classes)
    # Check the validation split now, not after hours of training.
    val_set = build_dataset(d.dataset, d.root, d.val_split, **options) if d.val_split else None
    model = spec.build()  # with the published weights the recipe asks for (downloaded)
    if world.distributed and device.type == "cuda":  # Gloo/CPU has no SyncBatchNorm
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if t.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = t.bn_momentum
    if t.freeze_bn:
        freeze_batchnorm(model)
    groups = _param_groups(model, t.lr, t.weight_decay, t.head_lr_mult)
    optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    scheduler = poly_lr(optimizer, t.steps, t.poly_power, t.warmup_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")

    ckpt_path = out / CHECKPOINT_NAME
    start = _restore(ckpt_path, model, optimizer, scheduler, scaler, device) if resume else 0

    def snapshot(step: int) -> dict[str, Any]:
        return {
            **_training_state(step, model, optimizer, scheduler, scaler, device),
            "config": to_dict(cfg),
            "model_spec": spec.without_downloads().to_dict(),  # its weights overwrite downloads
            "classes": list(train_set.classes),
            "palette": train_set.palette.tolist(),
            "mean": list(d.mean),
            "std": list(d.std),
        }

    net: nn.Module = model
    if world.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    sampler = _StepSampler(
        len(train_set),
        t.seed,
        start * t.batch_size * t.accumulate * world.world_size,
        rank=world.rank,
        world_size=world.world_size,
        batch_size=t.batch_size,
    )
    loader = DataLoader(
        _SeededItems(train_set),
        batch_size=t.batch_size,
        num_workers=d.num_workers,
        sampler=sampler,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # keep the loader's seed draw off the global RNG we resume
    )
    log = _RunLog(out, start, enabled=world.is_main)
    losses: list[float] = []
    net.train()
    if t.freeze_bn:
        freeze_batchnorm(model)
    batches = iter(loader)
    bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", disable=not progress)
    for step in range(start, t.steps):
        top_k = mining_fraction(step, t.top_k_percent, t.hard_mining_steps)
        lr = scheduler.get_last_lr()[0]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(t.accumulate):  # micro-batches: gradients add up to one step
            images, masks = next(batches)
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            last = micro + 1 == t.accumulate  # DDP all-reduces only the last micro-batch
            sync = contextlib.nullcontext() if last or not world.distributed else net.no_sync()
            with sync:
                with _autocast(t.amp, device):
                    loss = segmentation_loss(
                        net(images),
                        masks,
                        top_k_percent=top_k,
                        class_weights=t.class_weights,
                        aux_weight=t.aux_weight,
                    )
                share, value = (1.0, loss.item())
                if world.distributed:  # weigh ranks by pixels, as one process's mean does
                    kept = kept_pixel_count(int((masks != IGNORE_INDEX).sum()), top_k)
                    share, value = global_mean(loss.item(), kept, world, device)
                scaler.scale(loss * share / t.accumulate).backward()
            total += value / t.accumulate
        if not math.isfinite(total):
            raise AtrousError(f"loss became {total} at step {step}; lower train.lr")
        if t.clip_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses.append(total)
        bar.update()
        bar.set_postfix(loss=f"{total:.3f}", lr=f"{lr:.2e}")
        if (step + 1) % t.log_every == 0 or step + 1 == t.steps:
            log.write({"step": step + 1, "loss": total, "lr": lr}, loss=total, lr=lr)
        if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps:
            if world.is_main:
                save_checkpoint(ckpt_path, snapshot(step + 1))
            barrier(world)
    bar.close()

    metrics = None
    if val_set is not None:
        predictor = Predictor(model, mean=d.mean, std=d.std, device=device, info=train_set.info)
        shard = Subset(val_set, range(world.rank, len(val_set), world.world_size))
        matrix = evaluate(predictor, shard, train_set.num_classes, progress=progress)
        all_reduce_sum(matrix.matrix, world, device)
        metrics = matrix.compute()
        if world.is_main:
            write_json(
                out / "metrics.json",
                metrics,
                classes=list(train_set.classes),
                split=d.val_split,
                step=t.steps,
            )
            log.write(
                {"step": t.steps, "split": d.val_split, "eval": metrics}, miou=metrics["miou"]
            )
        if progress:
            print(format_table(metrics, train_set.classes))
    log.close()
    barrier(world)
    return {"checkpoint": ckpt_path, "metrics": metrics, "losses": losses}
