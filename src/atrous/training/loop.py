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
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..checkpoint import save_checkpoint
from ..config import Config, model_spec, to_dict
from ..data import build_dataset, eval_transforms, train_transforms
from ..data.info import IGNORE_INDEX
from ..data.weak import WeakFolder
from ..errors import AtrousError, ConfigError
from ..evaluation import Confusion, PanopticScores, evaluate, format_table, panoptic_table
from ..inference import Predictor, resolve_device
from ..metrics import write_json
from ..models.aspp import rates_past_crop
from ..models.spec import ModelSpec
from .distributed import WorldInfo, all_reduce_sum, barrier, cleanup, global_mean, init_distributed
from .losses import kept_pixel_count, mining_fraction, segmentation_loss
from .optim import autocast, check_amp, freeze_batchnorm, param_groups, resolve_amp
from .panoptic import panoptic_loss, panoptic_targets
from .runlog import LOG_NAME, RunLog
from .sampler import SeededItems, StepSampler
from .schedules import poly_lr
from .state import restore, training_state
from .weak import bbox_seg, weak_targets

CHECKPOINT_NAME = "checkpoint.pt"
__all__ = ["CHECKPOINT_NAME", "LOG_NAME", "train"]


@dataclass
class _Run:
    """Everything a training run holds between setup, the step loop and the evaluation."""

    cfg: Config
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
        }


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` for ``cfg.train.steps`` steps.

    Writes ``checkpoint.pt`` to ``cfg.train.out_dir`` every ``checkpoint_every`` steps and at
    the end, logs loss, LR and throughput to ``train_log.jsonl`` (and TensorBoard if
    installed), then evaluates on ``cfg.data.val_split`` (if set) into ``metrics.json``.
    ``resume=True`` continues from that checkpoint: same weights, optimizer, LR position, loss
    scale, RNG. Under ``torchrun`` it runs data-parallel (see the module docstring). Returns
    ``{"checkpoint": path, "metrics": dict or None, "losses": [per-step loss, global batch]}``.
    """
    device = resolve_device(cfg.train.device)
    check_amp(cfg.train.amp, device)
    if cfg.train.log_every < 1:
        raise ConfigError(f"train.log_every = {cfg.train.log_every}: must be 1 or more steps")
    if cfg.train.precise_bn < 0:
        raise ConfigError(f"train.precise_bn = {cfg.train.precise_bn}: must be 0 (off) or more")
    world, device = init_distributed(device)
    try:
        run = _setup(cfg, world, device, resume=resume, progress=progress and world.is_main)
        log = RunLog(Path(cfg.train.out_dir), run.start, enabled=world.is_main)
        try:
            losses = _step_loop(run, log, progress=progress and world.is_main)
            metrics = _final_evaluation(run, log, progress=progress and world.is_main)
        finally:
            log.close()
        barrier(world)
        return {"checkpoint": run.checkpoint, "metrics": metrics, "losses": losses}
    finally:
        cleanup(world)


def _datasets(cfg: Config, *, progress: bool) -> tuple[Dataset, Dataset | None]:
    """The augmented training split and the (checked up front) validation split."""
    d = cfg.data
    transforms = train_transforms(
        d.crop_size,
        mean=d.mean,
        std=d.std,
        scale_range=d.scale_range,
        scale_step=d.scale_step,
        hflip=d.hflip,
    )
    options: dict[str, Any] = {} if d.num_classes is None else {"num_classes": d.num_classes}
    if d.dataset in ("folder", "panoptic_folder"):
        options["val_fraction"] = d.val_fraction
    if d.supervision != "full":
        train_set: Any = _weak_dataset(cfg, transforms)
    else:
        train_set = build_dataset(d.dataset, d.root, d.train_split, transforms, **options)
    # Check the validation split now, not after hours of training.
    val_set = build_dataset(d.dataset, d.root, d.val_split, **options) if d.val_split else None
    for split in (train_set, val_set):
        held_out = getattr(split, "held_out", None)
        if held_out and progress:
            print(held_out)
    return train_set, val_set


def _weak_dataset(cfg: Config, transforms: Any) -> Any:
    """The training split with weak labels (``data.supervision``, ``weak.*``)."""
    d, w = cfg.data, cfg.weak
    if d.dataset != "folder":
        raise ConfigError(f"data.supervision = {d.supervision!r} reads the folder layout")
    dataset = WeakFolder(
        d.root, d.train_split, supervision=d.supervision, method=w.method, boxes=d.boxes,
        image_labels=d.image_labels, strong_fraction=d.strong_fraction,
        strong_repeat=w.strong_repeat, num_classes=d.num_classes, val_fraction=d.val_fraction,
        transforms=transforms,
    )  # fmt: skip
    dataset.bbox_seg = lambda image, boxes: bbox_seg(image, boxes, dataset.num_classes)
    return dataset


def _setup(
    cfg: Config, world: WorldInfo, device: torch.device, *, resume: bool, progress: bool
) -> _Run:
    """Data, model, solver (restored when resuming) and the data-parallel wrapper."""
    t = cfg.train
    torch.manual_seed(t.seed)
    train_set, val_set = _datasets(cfg, progress=progress)
    spec = model_spec(cfg, train_set.num_classes, getattr(train_set, "thing_classes", None))
    model = spec.build()  # with the published weights the recipe asks for (downloaded)
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
    groups = param_groups(model, t.lr, t.weight_decay, t.head_lr_mult)
    if t.optimizer == "sgd":
        optimizer: Optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    elif t.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=t.lr)
    else:
        raise ConfigError(f"train.optimizer = {t.optimizer!r}: expected 'sgd' or 'adam'")
    scheduler = poly_lr(optimizer, t.steps, t.poly_power, t.warmup_steps)
    amp = resolve_amp(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    checkpoint = Path(t.out_dir) / CHECKPOINT_NAME
    start = restore(checkpoint, model, optimizer, scheduler, scaler, device) if resume else 0
    net: nn.Module = model
    if world.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    return _Run(
        cfg, world, device, train_set, val_set, spec, model, net,
        optimizer, scheduler, scaler, start, checkpoint, amp,
    )  # fmt: skip


def _batches(run: _Run) -> Any:
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
        generator=torch.Generator(),  # keep the loader's seed draw off the global RNG we resume
    )
    return iter(loader)


def _train_step(run: _Run, batches: Any, step: int) -> Tensor:
    """One optimizer step over ``train.accumulate`` micro-batches; the loss over the global
    batch as a 0-d tensor (read on the host only when it is logged)."""
    t, world = run.cfg.train, run.world
    top_k = mining_fraction(step, t.top_k_percent, t.hard_mining_steps)
    for module in run.model.modules():  # ScheduledDropPath (Auto-DeepLab) follows the step
        if hasattr(module, "set_drop_path_progress"):
            module.set_drop_path_progress(step / t.steps)
    run.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=run.device)
    for micro in range(t.accumulate):  # micro-batches: gradients add up to one step
        images, masks = next(batches)
        images = images.to(run.device, non_blocking=True)
        if t.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.to(run.device, non_blocking=True)
        last = micro + 1 == t.accumulate  # DDP all-reduces only the last micro-batch
        sync = contextlib.nullcontext() if last or not world.distributed else run.net.no_sync()
        with sync:
            with autocast(run.amp, run.device):
                outputs = run.net(images)
            if hasattr(run.model, "thing_classes"):  # panoptic: semantic + centre + offsets
                targets = panoptic_targets(masks, run.model.thing_classes)
                loss = panoptic_loss(outputs, targets, top_k_percent=top_k)
            else:
                if masks.ndim == 4:  # weak labels: the E-step estimates where asked
                    logits = outputs["out"] if isinstance(outputs, dict) else outputs
                    masks = weak_targets(logits, masks, run.cfg.weak, run.cfg.weak.method)
                loss = segmentation_loss(
                    outputs,
                    masks,
                    top_k_percent=top_k,
                    class_weights=t.class_weights,
                    aux_weight=t.aux_weight,
                )
            share, value = 1.0, loss.detach().float()
            if world.distributed:  # weigh ranks by pixels, as one process's mean does
                semantic = masks[:, 0] if masks.ndim == 4 else masks
                kept = kept_pixel_count(int((semantic != IGNORE_INDEX).sum()), top_k)
                share, mean = global_mean(loss.item(), kept, world, run.device)
                value = torch.tensor(mean, device=run.device)
            run.scaler.scale(loss * share / t.accumulate).backward()
        total += value / t.accumulate
    if t.clip_grad_norm is not None:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return total


def _step_loop(run: _Run, log: RunLog, *, progress: bool) -> list[float]:
    """Steps ``run.start`` to ``train.steps``: log every ``log_every`` steps (loss, LR, images/s,
    s/step), checkpoint every ``checkpoint_every``. Returns the per-step losses."""
    t = run.cfg.train
    images_per_step = t.batch_size * t.accumulate * run.world.world_size
    run.net.train()
    if t.freeze_bn:  # train() put BN back into batch statistics
        freeze_batchnorm(run.model)
    batches = _batches(run)
    losses: list[Tensor] = []
    bar = tqdm(total=t.steps, initial=run.start, desc="train", unit="step", disable=not progress)
    since, clock = run.start, time.perf_counter()
    for step in range(run.start, t.steps):
        lr = run.scheduler.get_last_lr()[0]
        losses.append(_train_step(run, batches, step))
        bar.update()
        done = step + 1
        if done % t.log_every == 0 or done == t.steps:
            loss = losses[-1].item()
            if not math.isfinite(loss):
                raise AtrousError(f"loss became {loss} at step {step}; lower train.lr")
            seconds = (time.perf_counter() - clock) / (done - since)
            since, clock = done, time.perf_counter()
            speed = {"images_per_s": images_per_step / seconds, "s_per_step": seconds}
            bar.set_postfix(
                loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{speed['images_per_s']:.1f}"
            )
            log.write({"step": done, "loss": loss, "lr": lr, **speed}, loss=loss, lr=lr)
        if done == t.steps and t.precise_bn and not t.freeze_bn:
            _precise_bn(run, batches)
        if done % t.checkpoint_every == 0 or done == t.steps:
            if run.world.is_main:
                save_checkpoint(run.checkpoint, run.snapshot(done))
                if t.save_estimates and isinstance(run.train_set, WeakFolder):
                    save_estimates(run, done)
            barrier(run.world)
    bar.close()
    return [float(v) for v in torch.stack(losses).tolist()] if losses else []


def _precise_bn(run: _Run, batches: Any) -> None:
    """BN's running statistics become the plain average over ``train.precise_bn`` more
    training batches under the final weights ("precise BN": Wu & Johnson, Rethinking "Batch"
    in BatchNorm, 2021; detectron2's PreciseBN hook), not an exponential average weighted to
    the last few dozen steps (torch's momentum 0.1) or, in a short run, to the first ones (the
    TF reference's decay 0.9997). In fp32, as evaluation runs."""
    t = run.cfg.train

    def images() -> Any:
        for _ in range(t.precise_bn):
            x = next(batches)[0].to(run.device, non_blocking=True)
            yield x.contiguous(memory_format=torch.channels_last) if t.channels_last else x

    torch.optim.swa_utils.update_bn(images(), run.model)


def save_estimates(run: _Run, step: int) -> list[Path]:
    """The E-step estimates of the first ``train.save_estimates`` weak training images (whole,
    unaugmented) under the current weights, as palette PNGs in ``estimates/step_<step>/``."""
    dataset = run.train_set
    weak = [i for i, s in enumerate(dataset.stems) if s not in dataset.strong]
    out = Path(run.cfg.train.out_dir) / "estimates" / f"step_{step:06d}"
    out.mkdir(parents=True, exist_ok=True)
    normalize = eval_transforms(mean=run.cfg.data.mean, std=run.cfg.data.std)
    written = []
    run.model.eval()
    with torch.no_grad():
        for index in weak[: run.cfg.train.save_estimates]:
            image, mask = dataset.load(index)
            logits = run.model(normalize(image).unsqueeze(0).to(run.device))
            labels = weak_targets(
                logits, mask.unsqueeze(0).to(run.device), run.cfg.weak, run.cfg.weak.method
            )
            png = Image.fromarray(labels[0].cpu().numpy().astype(np.uint8), mode="P")
            png.putpalette(dataset.palette.ravel().tolist())
            written.append(out / f"{dataset.stems[index]}.png")
            png.save(written[-1])
    run.net.train()
    if run.cfg.train.freeze_bn:
        freeze_batchnorm(run.model)
    return written


def _final_evaluation(run: _Run, log: RunLog, *, progress: bool) -> dict[str, Any] | None:
    """Score the trained model on the validation split (sharded over ranks) into
    ``metrics.json`` and the log; None without a validation split."""
    if run.val_set is None:
        return None
    d, world = run.cfg.data, run.world
    predictor = Predictor(
        run.model, mean=d.mean, std=d.std, device=run.device, info=run.train_set.info
    )
    confusion = Confusion(run.train_set.num_classes)
    accumulators: dict[str, Any] = {"metrics": confusion}
    if hasattr(run.model, "thing_classes"):
        accumulators["panoptic"] = PanopticScores(predictor, run.train_set.num_classes)
    shard = Subset(run.val_set, range(world.rank, len(run.val_set), world.world_size))
    found = evaluate(predictor, shard, accumulators, progress=progress)
    all_reduce_sum(confusion.matrix.matrix, world, run.device)
    metrics = confusion.matrix.compute()
    if "panoptic" in found:  # (one process: panoptic counts are not reduced across ranks)
        metrics["panoptic"] = found["panoptic"]
    if world.is_main:
        steps = run.cfg.train.steps
        classes = list(run.train_set.classes)
        out = Path(run.cfg.train.out_dir) / "metrics.json"
        write_json(out, metrics, classes=classes, split=d.val_split, step=steps)
        log.write({"step": steps, "split": d.val_split, "eval": metrics}, miou=metrics["miou"])
    if progress:
        print(format_table(metrics, run.train_set.classes))
        if "panoptic" in metrics:
            print(panoptic_table(metrics["panoptic"]))
    return metrics
