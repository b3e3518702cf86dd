"""Training configs: dataclasses loaded from self-contained YAML recipes, plus ``key=value``.

A recipe has the sections ``data``, ``model``, ``train`` and (optional) ``refine``; every key
is checked against the dataclass fields, and an unknown key or a value of the wrong type is an
error naming it. The loader is written here (about 60 lines) rather than pulling in a config
framework: the recipes are flat dataclasses and the errors must name the recipe file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .config_checks import check_values
from .config_sections import (
    _LEGACY_MODEL_DEFAULTS,
    Config,
    CRFConfig,
    DataConfig,
    DomainTransformConfig,
    ModelConfig,
    RefineConfig,
    SearchConfig,
    TrainConfig,
    WeakConfig,
    _plain_tuple,
)
from .errors import ConfigError
from .models import MODELS
from .models.spec import REMOVED_OPTIONS, ModelSpec, builder_parameters
from .tasks import TASKS, Task
from .tasks.parts import PART_DATASETS

__all__ = [
    "CRFConfig",
    "Config",
    "DataConfig",
    "DomainTransformConfig",
    "ModelConfig",
    "RefineConfig",
    "SearchConfig",
    "TrainConfig",
    "WeakConfig",
    "apply_overrides",
    "from_dict",
    "load_config",
    "model_spec",
    "resolve_task",
    "task_of",
    "to_dict",
]


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against a field's type hint; lists become tuples and ints floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:  # the first alternative the value fits
            try:
                return _coerce(value, alternative, key, source)
            except ConfigError:
                continue
        return _coerce(value, inner[-1], key, source)
    sequence = isinstance(value, (list, tuple))
    if origin in (dict, collections.abc.Mapping) and isinstance(value, dict):
        return dict(value)
    if origin in (collections.abc.Sequence, list) and sequence:  # Sequence[T] / list[T]
        return tuple(_coerce(v, args[0], key, source) for v in value) if args else tuple(value)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and sequence:  # tuple[T, ...]
        return tuple(_coerce(v, args[0], key, source) for v in value)
    if origin is tuple and isinstance(value, (list, tuple)) and len(value) == len(args):
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if (
        isinstance(hint, type)
        and isinstance(value, hint)
        and not (hint is int and isinstance(value, bool))
    ):
        return value
    raise ConfigError(f"{source}: {key} = {value!r} is not a valid {_hint_name(hint)}")


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _update(obj: Any, values: dict[str, Any], prefix: str, source: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj) if f.name not in ("options", "sources")]
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(obj, ModelConfig) and key == "scale_attention" and isinstance(value, bool):
            value = {} if value else None  # true: the paper's settings
        if isinstance(obj, ModelConfig) and key not in names:  # a builder option
            obj.options[key] = value
            obj.sources[key] = source
            continue
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key {path!r}; valid keys here: {', '.join(names)}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path} must be a mapping of keys to values")
            _update(current, value, f"{path}.", source)
        else:
            setattr(obj, key, _coerce(value, hints[key], path, source))


def check_model_options(model: ModelConfig, *, legacy: bool = False) -> None:
    """Check every builder option of ``model`` against builder ``name``'s signature and type
    hints (values coerced in place), naming the key and where it was set. ``legacy`` drops
    options the builder does not take that sit at the old fixed-field defaults (configs stored
    in older checkpoints)."""
    try:
        accepted = builder_parameters(model.name)
    except ConfigError as err:
        raise ConfigError(f"model.name: {err}") from None
    hints = typing.get_type_hints(MODELS[model.name])
    for key in list(model.options):
        source = model.sources.get(key, "config")
        value = model.options[key]
        if key not in accepted:
            if legacy and _LEGACY_MODEL_DEFAULTS.get(key, object()) == _plain_tuple(value):
                del model.options[key]
                continue
            if key in REMOVED_OPTIONS:
                raise ConfigError(f"{source}: model.{key}: {REMOVED_OPTIONS[key]}")
            raise ConfigError(
                f"{source}: unknown key 'model.{key}' for builder {model.name!r}; its options: "
                + ", ".join(k for k in accepted if k != "num_classes")
            )
        if key == "num_classes":
            raise ConfigError(
                f"{source}: model.num_classes comes from the data set (data.num_classes for a "
                "folder without classes.json)"
            )
        if key in hints:
            model.options[key] = _coerce(value, hints[key], f"model.{key}", source)


def model_spec(
    cfg: Config, num_classes: int, data_options: Mapping[str, Any] | None = None
) -> ModelSpec:
    """The :class:`~atrous.models.ModelSpec` a recipe trains: its builder options with the data
    set's ``num_classes`` (and ``data_options``, what the task takes from the data, e.g. a
    panoptic builder's ``thing_classes``, where the recipe leaves them out), and the wrappers it
    switches on with their ``refine:`` settings."""
    wrappers: list[tuple[str, dict[str, Any]]] = []
    if cfg.model.scale_attention is not None:
        if cfg.model.domain_transform:
            raise ConfigError(
                "model.scale_attention and model.domain_transform cannot be combined (DT-EdgeNet "
                "reads one scale's backbone features)"
            )
        wrappers.append(("scale_attention", dict(cfg.model.scale_attention)))
    if cfg.model.domain_transform:
        wrappers.append(("domain_transform", dataclasses.asdict(cfg.refine.domain_transform)))
    if cfg.model.dense_crf:
        crf = dataclasses.asdict(cfg.refine.crf.params())
        wrappers.append(
            ("dense_crf", {**crf, "mean": list(cfg.data.mean), "std": list(cfg.data.std)})
        )
    kwargs = {**cfg.model.builder_kwargs(), "num_classes": num_classes}
    accepted = builder_parameters(cfg.model.name)
    for key, value in (data_options or {}).items():
        if key in accepted:
            kwargs.setdefault(key, value)
    return ModelSpec(cfg.model.name, kwargs, tuple(wrappers))


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML recipe (or the defaults if ``path`` is None) and apply ``key=value`` overrides.

    Overrides use dotted keys, e.g. ``train.lr=0.01`` or ``data.scale_range=[0.5,1.5]``;
    values are parsed as YAML.
    """
    cfg = Config()
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config is a mapping with data/model/train sections")
        _update(cfg, raw, "", str(path))
    return apply_overrides(cfg, overrides, source=str(path or "--set"))


def resolve_task(cfg: Config, source: str = "config") -> str:
    """Set ``cfg.task`` when the recipe leaves it out (see :class:`Config`) and check that its
    model and data agree with it: one error naming ``source`` and every contradiction."""
    if cfg.task is None:
        legacy = cfg.data.supervision != "full" or cfg.model.name == "panoptic_deeplab"
        cfg.task = "semantic"
        if legacy:  # recipes written before ``task:`` existed
            cfg.task = "weak" if cfg.data.supervision != "full" else "panoptic"
        if cfg.model.name in ("personlab", "masklab"):  # the one model of its task
            cfg.task = cfg.model.name
        if cfg.model.name == "hazn" or cfg.data.dataset in PART_DATASETS:  # [3, H, W] targets
            cfg.task = "parts"
    if cfg.task not in TASKS:
        raise ConfigError(
            f"{source}: task = {cfg.task!r} is not a task; available: {', '.join(TASKS)}"
        )
    problems = TASKS[cfg.task].recipe_problems(cfg)
    if problems:
        raise ConfigError(
            f"{source}: task {cfg.task!r} contradicts the recipe: " + "; ".join(problems)
        )
    return cfg.task


def task_of(cfg: Config, source: str = "config") -> Task:
    """The recipe's task (checked against its model and data), set up as the recipe says."""
    return TASKS[resolve_task(cfg, source)].from_recipe(cfg)


def apply_overrides(
    cfg: Config, overrides: list[str] | tuple[str, ...], *, source: str = "config"
) -> Config:
    """Apply dotted ``key=value`` overrides (values parsed as YAML) to ``cfg`` in place, then
    check the builder options and the task (errors name ``source``, the recipe file)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.01")
        nested: Any = yaml.safe_load(text) if text else ""
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        _update(cfg, nested, "", f"--set {item}")
    check_model_options(cfg.model)
    check_values(cfg, source)
    resolve_task(cfg, source)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), for YAML dumps and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    out = plain(dataclasses.asdict(cfg))
    model = out["model"]
    del model["sources"]
    model.update(model.pop("options"))  # builder options sit beside name in a recipe
    return out


def from_dict(values: dict[str, Any], source: str = "checkpoint") -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict`'s output, with the same checks."""
    cfg = Config()
    _update(cfg, values, "", source)
    check_model_options(cfg.model, legacy=True)
    resolve_task(cfg, source)
    return cfg
