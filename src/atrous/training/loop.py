"""The training loop: set-up, the step, logging, checkpointing and evaluation, each a short
function; what differs between kinds of training is the recipe's task (:mod:`atrous.tasks`).

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
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checkpoint import save_checkpoint
from ..config import Config, to_dict
from ..config_checks import check_values
from ..evaluation import format_table, panoptic_table
from ..metrics import write_json
from ..models.progress import set_training_progress
from ..tasks.losses import kept_pixel_count, mining_fraction
from .distributed import barrier, cleanup, global_mean, init_distributed, rank0_decides
from .guard import StopAtStepEnd, check_device, check_finite, resume_or_refuse
from .optim import autocast, check_amp, freeze_batchnorm
from .runlog import LOG_NAME, RunLog
from .setup import CHECKPOINT_NAME, Run, batches, setup
from .validation import BEST_NAME, metric_value

__all__ = ["CHECKPOINT_NAME", "LOG_NAME", "train"]


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` for ``cfg.train.steps`` steps, as ``cfg.task`` says.

    Writes ``checkpoint.pt`` to ``cfg.train.out_dir`` every ``checkpoint_every`` steps and at
    the end, logs loss, LR and throughput to ``train_log.jsonl`` (and TensorBoard if
    installed), then evaluates on ``cfg.data.val_split`` (if set) into ``metrics.json``.
    ``resume=True`` (or ``train.resume``: true, or auto where the checkpoint exists) continues
    from that checkpoint: same weights, optimizer, LR position, loss scale, RNG; a new run never
    replaces another run's files (:func:`.guard.resume_or_refuse`). Training stops with an
    error, keeping the last good checkpoint, when the loss or the weights stop being finite;
    Ctrl+C stops at the end of the step, saves and says how to continue. Under ``torchrun``
    it runs data-parallel (see the module docstring). Returns
    ``{"checkpoint": path, "metrics": dict or None, "losses": [per-step loss, global batch]}``.
    """
    check_values(cfg)  # a Config built in code has not been through load_config's checks
    device = check_device(cfg.train.device)
    check_amp(cfg.train.amp, device)
    resume = resume_or_refuse(cfg, resume)
    world, device = init_distributed(device)
    resume = rank0_decides(resume, world)  # every node continues, or none does
    try:
        main = progress and world.is_main
        run = setup(cfg, world, device, resume=resume, progress=main)
        log = RunLog(
            Path(cfg.train.out_dir), run.start, enabled=world.is_main,
            loggers=cfg.train.loggers, config=to_dict(cfg),
        )  # fmt: skip
        try:
            losses = _step_loop(run, log, progress=main)
            metrics = _final_evaluation(run, log, progress=main)
        finally:
            log.close()
        barrier(world)
        return {"checkpoint": run.checkpoint, "metrics": metrics, "losses": losses}
    finally:
        cleanup(world)


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch's tensor, or dict or list of them (a task's targets, e.g. PersonLab's), on
    ``device``."""
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):  # per-image targets of differing sizes (MaskLab)
        return type(batch)(to_device(value, device) for value in batch)
    return batch.to(device, non_blocking=True)


def _train_step(run: Run, stream: Any, step: int) -> Tensor:
    """One optimizer step over ``train.accumulate`` micro-batches; the loss over the global
    batch as a 0-d tensor (read on the host only when it is logged)."""
    t, world = run.cfg.train, run.world
    top_k = mining_fraction(step, t.top_k_percent, t.hard_mining_steps)
    set_training_progress(run.model, step / t.steps)  # e.g. Auto-DeepLab's drop-path schedule
    run.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=run.device)
    for micro in range(t.accumulate):  # micro-batches: gradients add up to one step
        images, masks = (to_device(x, run.device) for x in next(stream))
        if t.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        last = micro + 1 == t.accumulate  # DDP all-reduces only the last micro-batch
        sync = contextlib.nullcontext() if last or not world.distributed else run.net.no_sync()
        with sync:
            with autocast(run.amp, run.device):
                outputs = run.task.forward(run.net, images, masks)
            step_loss = run.task.loss(outputs, masks, top_k_percent=top_k)
            share, value = 1.0, step_loss.loss.detach().float()
            if world.distributed:  # weigh ranks by pixels, as one process's mean does
                kept = kept_pixel_count(int(step_loss.pixels), top_k)
                share, mean = global_mean(step_loss.loss.item(), kept, world, run.device)
                value = torch.tensor(mean, device=run.device)
            run.scaler.scale(step_loss.loss * share / t.accumulate).backward()
        total += value / t.accumulate
    if t.clip_grad_norm is not None:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return total


def _step_loop(run: Run, log: RunLog, *, progress: bool) -> list[float]:
    """Steps ``run.start`` to ``train.steps``: log every ``log_every`` steps, checkpoint every
    ``checkpoint_every`` (after checking that training is still finite). Ctrl+C stops at the
    end of the step and checkpoints there. Returns the per-step losses."""
    t = run.cfg.train
    run.net.train()
    if t.freeze_bn:  # train() put BN back into batch statistics
        freeze_batchnorm(run.model)
    stream = batches(run)
    losses: list[Tensor] = []
    bar = tqdm(total=t.steps, initial=run.start, desc="train", unit="step", disable=not progress)
    clock = _Clock(run.start, t.batch_size * t.accumulate * run.world.world_size)
    checked = 0  # losses[:checked] are known to be finite
    with StopAtStepEnd(enabled=not run.world.distributed) as stop:
        for step in range(run.start, t.steps):
            lr = run.scheduler.get_last_lr()[0]
            losses.append(_train_step(run, stream, step))
            bar.update()
            run.step = done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                check_finite(None, losses[-1:], step, run.checkpoint)  # stop early, not at a save
                _log_step(log, bar, done, losses[-1].item(), lr, clock.lap(done))
            if done == t.steps and t.precise_bn and not t.freeze_bn:
                _precise_bn(run, stream)
            if t.eval_every and done % t.eval_every == 0 and done < t.steps and run.val_set:
                clock.pause(_validate(run, log, bar, done, progress=progress))
            early = run.validation.should_stop
            if done % t.checkpoint_every == 0 or done == t.steps or stop.requested or early:
                check_finite(run.model, losses[checked:], run.start + checked, run.checkpoint)
                checked = len(losses)
                _checkpoint(run, done)
            if stop.requested:
                bar.close()
                stop.report(done, run.checkpoint)
            if early:
                _say(progress, f"early stop after step {done}: {t.early_stop} evaluations "
                     f"without a gain in {run.validation.metric}")  # fmt: skip
                break
    bar.close()
    return [float(v) for v in torch.stack(losses).tolist()] if losses else []


def _validate(run: Run, log: RunLog, bar: Any, step: int, *, progress: bool) -> float:
    """Evaluate on the validation split during training: the task's metrics and the per-class
    table to the log (JSONL, TensorBoard) and the bar, ``best.pt`` when they are the best so
    far. Returns the seconds it took (kept out of the training throughput)."""
    metrics, seconds = run.validation.evaluate(progress=False)
    improved = run.validation.record(step, metrics)
    value = metric_value(metrics, run.validation.metric)
    name = run.validation.metric
    bar.set_postfix(**{name: f"{100 * value:.2f}", "best": "*" if improved else ""})
    per_class = {
        f"val/iou/{c}": v
        for c, v in zip(run.train_set.classes, metrics.get("iou", []), strict=False)
        if v == v  # absent classes (NaN) are left out of TensorBoard
    }
    record = {"step": step, "split": run.cfg.data.val_split, "eval": metrics,
              "eval_seconds": seconds, "best": improved}  # fmt: skip
    log.write(record, **{f"val/{name}": value, "val/eval_seconds": seconds, **per_class})
    return seconds


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text)


class _Clock:
    """Throughput since the last lap: images/s and s/step."""

    def __init__(self, step: int, images_per_step: int) -> None:
        self.step, self.time, self.images_per_step = step, time.perf_counter(), images_per_step

    def pause(self, seconds: float) -> None:
        """Leave ``seconds`` (an evaluation) out of the throughput."""
        self.time += seconds

    def lap(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        seconds = (now - self.time) / max(step - self.step, 1)
        self.step, self.time = step, now
        return {"images_per_s": self.images_per_step / seconds, "s_per_step": seconds}


def _log_step(log: RunLog, bar: Any, step: int, loss: float, lr: float, speed: dict) -> None:
    """One line of the JSONL / TensorBoard log and the progress bar."""
    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{speed['images_per_s']:.1f}")
    log.write({"step": step, "loss": loss, "lr": lr, **speed}, loss=loss, lr=lr)


def _checkpoint(run: Run, step: int) -> None:
    """Rank 0 writes the checkpoint (and what the task keeps beside it); the others wait."""
    if run.world.is_main:
        save_checkpoint(run.checkpoint, run.snapshot(step))
        run.task.on_checkpoint(run.model, Path(run.cfg.train.out_dir), step, run.device)
    barrier(run.world)


def _precise_bn(run: Run, stream: Any) -> None:
    """BN's running statistics become the plain average over ``train.precise_bn`` more
    training batches under the final weights ("precise BN": Wu & Johnson, Rethinking "Batch"
    in BatchNorm, 2021; detectron2's PreciseBN hook), not an exponential average weighted to
    the last few dozen steps (torch's momentum 0.1) or, in a short run, to the first ones (the
    TF reference's decay 0.9997). In fp32, as evaluation runs."""
    t = run.cfg.train

    def images() -> Any:
        for _ in range(t.precise_bn):
            x = next(stream)[0].to(run.device, non_blocking=True)
            yield x.contiguous(memory_format=torch.channels_last) if t.channels_last else x

    torch.optim.swa_utils.update_bn(images(), run.model)


def _final_evaluation(run: Run, log: RunLog, *, progress: bool) -> dict[str, Any] | None:
    """Score the trained model with the task's evaluator on the validation split (sharded over
    ranks, counts reduced) into ``metrics.json`` and the log; None without a validation split.
    With ``train.eval_every`` it is one more evaluation for ``best.pt``."""
    if run.val_set is None:
        return None
    d, world, t = run.cfg.data, run.world, run.cfg.train
    picture = Path(t.out_dir) / "predictions.png"
    metrics, seconds = run.validation.evaluate(progress=progress, picture=picture)
    step = run.step or run.start
    improved = bool(t.eval_every) and run.validation.record(step, metrics)
    if world.is_main:
        classes = list(run.train_set.classes)
        out = Path(t.out_dir) / "metrics.json"
        write_json(out, metrics, classes=classes, split=d.val_split, step=step)
        best = {"best": improved} if t.eval_every else {}
        record = {"step": step, "split": d.val_split, "eval": metrics, "eval_seconds": seconds}
        log.write({**record, **best}, **{"val/miou": metrics["miou"]})
        kept = Path(t.out_dir) / BEST_NAME
        for path in (out, picture, kept if kept.is_file() else run.checkpoint):
            log.artifact(path)
    if progress:
        print(format_table(metrics, run.train_set.classes))
        if "panoptic" in metrics:
            print(panoptic_table(metrics["panoptic"]))
        if run.validation.best is not None and t.eval_every:
            best = run.validation.best
            print(f"best {best['metric']} {100 * best['value']:.2f} at step {best['step']} "
                  f"({Path(t.out_dir) / BEST_NAME})")  # fmt: skip
    return metrics
