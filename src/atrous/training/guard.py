"""What keeps a training run from losing work or going on silently wrong: no new run over
another run's files, a clear word for a device that is not there, no checkpoint of a diverged
model, and Ctrl+C that stops at a step's end with the checkpoint saved."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import nonfinite_tensors
from ..errors import AtrousError, ConfigError
from ..inference import resolve_device
from .runlog import LOG_NAME
from .setup import CHECKPOINT_NAME

RUN_FILES = (CHECKPOINT_NAME, "metrics.json", LOG_NAME)
"""What a run writes into ``train.out_dir``; a new run refuses a folder holding any of them."""


def check_device(name: str) -> torch.device:
    """``train.device`` as a device, refused in one line when this machine does not have it."""
    try:
        device = resolve_device(name)  # "auto": CUDA when there is one, else the CPU
    except RuntimeError:
        raise ConfigError(
            f"train.device = {name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.device = {name!r}, but torch sees no CUDA device here; use auto or cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device = {name!r}, but there are {torch.cuda.device_count()} CUDA devices"
            )
    return device


def resume_or_refuse(cfg: Any, resume: bool) -> bool:
    """Whether the run continues ``out_dir/checkpoint.pt``: ``resume`` (``--resume``) or
    ``train.resume`` (true, or ``"auto"`` where the checkpoint exists). A new run refuses a
    folder that already holds a run's files, naming them and the ways on."""
    out = Path(cfg.train.out_dir)
    checkpoint = out / CHECKPOINT_NAME
    wanted = resume or cfg.train.resume is True
    if cfg.train.resume == "auto" and not resume:
        if not checkpoint.is_file():
            return False  # nothing to continue: start (over), as a restarted job expects
        wanted = True
    if wanted:
        if not checkpoint.is_file():
            raise ConfigError(
                f"{checkpoint}: nothing to resume (no checkpoint); drop --resume / train.resume "
                "to start a new run, or set train.resume: auto"
            )
        return True
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.out_dir = {out}: is a file, not a folder")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not checkpoint.is_file():
        raise ConfigError(
            f"train.out_dir = {out} holds a run that left no checkpoint ({', '.join(found)}); "
            "remove those files, give this run another train.out_dir, or set train.resume: "
            "auto to start over there"
        )
    if found:
        raise ConfigError(
            f"train.out_dir = {out} already holds a run ({', '.join(found)}); continue it with "
            "--resume (or train.resume: auto), or give this run another train.out_dir"
        )
    return False


def check_finite(
    model: nn.Module | None, losses: Sequence[Tensor], first_step: int, checkpoint: Path
) -> None:
    """Before a checkpoint: the losses since the last one (``first_step`` the first's index)
    and every weight and BN statistic of ``model`` are finite, else stop with the step where it
    happened; the last checkpoint is kept."""
    if losses:
        values = torch.stack(list(losses)).float()
        bad = (~values.isfinite()).nonzero()
        if bad.numel():
            index = int(bad[0])
            raise AtrousError(
                f"the loss became {values[index].item()} at step {first_step + index}: training "
                f"diverged; {_kept(checkpoint)}. Lower train.lr or set train.clip_grad_norm"
            )
    if model is None:
        return
    bad = nonfinite_tensors([*model.named_parameters(), *model.named_buffers()])
    if bad:
        raise AtrousError(
            f"{bad[0]} holds NaN or Inf values (the loss stayed finite): training diverged; "
            f"{_kept(checkpoint)}. Lower train.lr or set train.clip_grad_norm"
        )


def _kept(checkpoint: Path) -> str:
    if checkpoint.is_file():
        return f"the last good checkpoint is kept ({checkpoint})"
    return "no checkpoint was written"


class StopAtStepEnd:
    """Ctrl+C while training: the first one asks the loop to stop at the end of the current
    step (which then checkpoints and raises KeyboardInterrupt), a second one stops at once.
    Only in the main thread of one process (a signal handler cannot be set elsewhere)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second Ctrl+C
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping at the end of this step (Ctrl+C again to stop now)", file=sys.stderr)

    def __enter__(self) -> StopAtStepEnd:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)

    def report(self, step: int, checkpoint: Path) -> None:
        """Say where the run stopped and how to go on, then raise KeyboardInterrupt."""
        print(
            f"interrupted after step {step}: saved {checkpoint}; continue with the same command "
            "and --resume (or train.resume: auto)",
            file=sys.stderr,
        )
        raise KeyboardInterrupt
