"""Post-hoc refiners set up the way a checkpoint was trained: its recipe's ``refine:`` section
with ``--set refine.*`` overrides (dense CRF, domain transform with image edges)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

from .. import refine as refinement  # looked up per call, so tests can stand in for them
from ..config import Config, apply_overrides, from_dict
from ..errors import ConfigError
from .accumulators import Refiner


def refiners_from_recipe(
    saved_config: dict[str, Any] | None,
    *,
    crf: bool = False,
    domain_transform: bool = False,
    overrides: Sequence[str] = (),
    source: str = "checkpoint",
) -> dict[str, Refiner]:
    """``{"domain_transform": ..., "crf": ...}`` (in that order, as asked) with the settings of
    ``saved_config`` (a checkpoint's ``config``; defaults when None) and ``overrides``
    (``refine.*`` keys only)."""
    bad = [item for item in overrides if not item.startswith("refine.")]
    if bad:
        raise ConfigError(f"--set {bad[0]!r}: only refine.* settings apply here")
    cfg = from_dict(saved_config, source) if saved_config else Config()
    refine = apply_overrides(cfg, list(overrides)).refine
    out: dict[str, Refiner] = {}
    if domain_transform:
        settings = dataclasses.asdict(refine.domain_transform)
        out["domain_transform"] = partial(refinement.posthoc_domain_transform, **settings)
    if crf:
        try:
            params = dataclasses.asdict(refine.crf.params())
        except ValueError as err:
            raise ConfigError(f"refine.crf: {err}") from None
        out["crf"] = partial(refinement.dense_crf, backend=refine.crf.backend, **params)
    return out


def chain(refiners: Sequence[Refiner]) -> Refiner | None:
    """One refiner applying ``refiners`` in order (None for none)."""
    if not refiners:
        return None
    if len(refiners) == 1:
        return refiners[0]
    return partial(_chain, list(refiners))


def _chain(refiners: list[Refiner], image: Any, probs: Any) -> Any:
    for refine in refiners:
        probs = refine(image, probs)
    return probs
