"""Training progress for modules whose behaviour follows the schedule (Auto-DeepLab's scheduled
drop-path): a module registers a hook, the training loop calls :func:`set_training_progress`
on its model each step, without knowing which modules listen."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from torch import nn

Hook = Callable[[nn.Module, float], None]

# Keyed weakly by module: a model that is dropped takes its hooks with it (a hook gets the
# module as its first argument, so it holds no reference that would keep the module alive).
_HOOKS: weakref.WeakKeyDictionary[nn.Module, list[Hook]] = weakref.WeakKeyDictionary()


def register_progress_hook(module: nn.Module, hook: Hook) -> None:
    """Call ``hook(module, progress)`` (progress 0 at the first training step, 1 at the end)
    whenever :func:`set_training_progress` runs on a model holding ``module``."""
    _HOOKS.setdefault(module, []).append(hook)


def set_training_progress(model: nn.Module, progress: float) -> None:
    """Tell every module of ``model`` that registered a hook where training is (0 to 1)."""
    if not _HOOKS:
        return
    for module in model.modules():
        for hook in _HOOKS.get(module, ()):
            hook(module, progress)
