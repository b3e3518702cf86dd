"""``ModelSpec``: what a model is (a builder, its keyword arguments, the wrappers around it), as
plain data that recipes write, checkpoints store and :meth:`ModelSpec.build` turns into the model.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError
from .builders import MODELS
from .wrappers.crf_as_rnn import with_dense_crf
from .wrappers.domain_transform import with_domain_transform
from .wrappers.scale_attention import with_scale_attention

WRAPPERS: dict[str, Callable[..., nn.Module]] = {
    "scale_attention": with_scale_attention,  # attention to scale / v2 MSC (Chen et al., 2016)
    "domain_transform": with_domain_transform,  # DT-EdgeNet (Chen et al., CVPR 2016)
    "dense_crf": with_dense_crf,  # CRF-as-RNN (Zheng et al., 2015)
}
"""Wrapper names in a spec -> the function that wraps a model: ``fn(model, **kwargs)``."""

DOWNLOADS = ("backbone_weights",)
"""Builder options that download published weights (left out when a checkpoint is rebuilt).
A whole published model is no builder option: :func:`~atrous.models.from_weights` gives it."""


REMOVED_OPTIONS = {
    "weights": "published weights are no builder option: a published model comes whole from "
    "atrous.models.from_weights(NAME) (on the command line: atrous predict --weights NAME; the "
    "names: atrous.models.list_weights()); to start a backbone from ImageNet set "
    "backbone_weights ('imagenet')",
}
"""Builder options that are gone, with what to use instead (for the errors that name them)."""


def builder_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments builder ``name`` takes; an unknown builder is an error."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return dict(inspect.signature(MODELS[name]).parameters)


def check_kwargs(name: str, kwargs: Mapping[str, Any], where: str = "model") -> None:
    """Raise naming the first key of ``kwargs`` that builder ``name`` does not take."""
    accepted = builder_parameters(name)
    for key in kwargs:
        if key in REMOVED_OPTIONS and key not in accepted:
            raise ConfigError(f"{where}: {key!r}: {REMOVED_OPTIONS[key]}")
        if key not in accepted:
            raise ConfigError(
                f"{where}: builder {name!r} has no option {key!r}; its options: "
                + ", ".join(accepted)
            )


@dataclass(frozen=True)
class ModelSpec:
    """A model as data: builder ``name`` from :data:`~.builders.MODELS` called with ``kwargs``,
    then each of ``wrappers`` (``(name, kwargs)`` from :data:`WRAPPERS`, innermost first)."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrappers: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    def __post_init__(self) -> None:
        check_kwargs(self.name, self.kwargs)
        for wrapper, _ in self.wrappers:
            if wrapper not in WRAPPERS:
                raise ConfigError(
                    f"unknown model wrapper {wrapper!r}; available: {', '.join(WRAPPERS)}"
                )
        # Own copies, so changing the caller's dicts cannot change a frozen spec.
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        object.__setattr__(self, "wrappers", tuple((n, dict(k)) for n, k in self.wrappers))

    def build(self) -> nn.Module:
        """The model: builder, then wrappers. A builder rejecting a value is a ConfigError."""
        try:
            model: nn.Module = MODELS[self.name](**self.kwargs)
            for wrapper, kwargs in self.wrappers:
                model = WRAPPERS[wrapper](model, **kwargs)
        except (TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"model {self.name!r}: {err}") from None
        return model

    def wrapper(self, name: str) -> Mapping[str, Any] | None:
        """The kwargs of wrapper ``name``, or None when the spec has no such wrapper."""
        return next((kwargs for n, kwargs in self.wrappers if n == name), None)

    def without_downloads(self) -> ModelSpec:
        """The same architecture with no published weights to fetch: what a checkpoint stores,
        since its own weights overwrite them."""
        kwargs = {k: (None if k in DOWNLOADS else v) for k, v in self.kwargs.items()}
        return dataclasses.replace(self, kwargs=kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) for checkpoints and exported files' metadata."""

        def plain(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        return {
            "name": self.name,
            "kwargs": plain(self.kwargs),
            "wrappers": [[n, plain(k)] for n, k in self.wrappers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Read :meth:`to_dict`'s output; also the spec dicts of checkpoints written before
        ``ModelSpec`` (``domain_transform`` / ``dense_crf`` settings beside ``kwargs``)."""
        wrappers = [(str(n), dict(k)) for n, k in data.get("wrappers", [])]
        for legacy in ("domain_transform", "dense_crf"):
            if data.get(legacy):
                wrappers.append((legacy, dict(data[legacy])))
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data["kwargs"].items()}
        if "weights" in kwargs and kwargs["weights"] is None:
            del kwargs["weights"]  # what without_downloads() stored while builders took weights=
        return cls(str(data["name"]), kwargs, tuple(wrappers))
