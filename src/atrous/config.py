"""Training configs: dataclasses loaded from self-contained YAML recipes, plus ``key=value``.

A recipe has the sections ``data``, ``model``, ``train`` and (optional) ``refine``; every key
is checked against the dataclass fields, and an unknown key or a value of the wrong type is an
error naming it. The loader is written here (about 60 lines) rather than pulling in a config
framework: the recipes are flat dataclasses and the errors must name the recipe file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .errors import ConfigError
from .models import MODELS
from .models.crf_as_rnn import CRFParams
from .models.domain_transform import DEFAULT_SIGMA_R, DEFAULT_SIGMA_S
from .models.domain_transform import ITERATIONS as DT_ITERATIONS
from .models.spec import ModelSpec, builder_parameters


@dataclass
class DataConfig:
    """Where the data is and how it is augmented (defaults: DeepLab on PASCAL VOC)."""

    dataset: str = "folder"  # a name in atrous.data.DATASETS: folder, voc, cityscapes, ...
    root: str = ""
    train_split: str = "train"
    val_split: str | None = "val"
    num_classes: int | None = None  # folder only; None: from the folder's classes.json
    # folder without a val.txt: hold out this share of the images as val (by a hash of the
    # file name, so the split is the same every run)
    val_fraction: float = 0.1
    crop_size: int = 513
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_step: float = 0.25
    hflip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_workers: int = 2


@dataclass(init=False)
class ModelConfig:
    """A builder from :data:`atrous.models.MODELS`, its keyword arguments and the wrappers
    around it. In a recipe every key of ``model:`` but ``name`` and the wrapper switches is a
    keyword argument of the builder (``backbone``, ``output_stride``, ``extra_blocks``, ...),
    checked against its signature and type hints; options left out keep the builder's
    defaults. ``ModelConfig(name="deeplabv3", backbone="resnet50")`` and
    ``cfg.model.backbone`` read the same way."""

    name: str = "deeplabv3plus"
    # DT-EdgeNet (Chen et al., CVPR 2016): an EdgeNet on the backbone features guides a domain
    # transform on the logits, trained end to end; its sigmas are refine.domain_transform's.
    domain_transform: bool = False
    # CRF-as-RNN (Zheng et al., 2015): a learnable dense CRF layer on the logits, trained end
    # to end; its kernel widths and starting weights are refine.crf's.
    dense_crf: bool = False
    # Attention to scale (Chen et al., CVPR 2016) / v2 MSC: null (off), true (the paper's
    # scales 1, 0.75, 0.5 merged by attention) or {scales: [...], merge: attention|max|avg}.
    scale_attention: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the builder's keyword arguments
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __init__(
        self,
        name: str = "deeplabv3plus",
        domain_transform: bool = False,
        dense_crf: bool = False,
        scale_attention: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        sources: dict[str, str] | None = None,
        **builder_options: Any,
    ) -> None:
        self.name, self.domain_transform, self.dense_crf = name, domain_transform, dense_crf
        self.scale_attention = scale_attention
        self.options = {**(options or {}), **builder_options}
        self.sources = dict(sources or {})

    def __getattr__(self, key: str) -> Any:
        """A builder option: the recipe's value, else the builder's default."""
        if key.startswith("_") or key in ("name", "options", "sources", "scale_attention"):
            raise AttributeError(key)
        if key in self.options:
            return self.options[key]
        parameter = builder_parameters(self.name).get(key)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise AttributeError(f"builder {self.name!r} has no option {key!r}")
        return parameter.default

    def builder_kwargs(self) -> dict[str, Any]:
        """The builder's keyword arguments the recipe sets (the rest keep their defaults)."""
        return dict(self.options)

    def resolved(self) -> dict[str, Any]:
        """Every builder option: the recipe's values over the builder's defaults."""
        defaults = {
            k: p.default
            for k, p in builder_parameters(self.name).items()
            if p.default is not inspect.Parameter.empty and k != "num_classes"
        }
        return {**defaults, **{k: _plain_tuple(v) for k, v in self.options.items()}}

    def __eq__(self, other: object) -> bool:
        """Equal when they build the same model (an option at its default = left out)."""
        if not isinstance(other, ModelConfig):
            return NotImplemented
        same = (self.name, self.domain_transform, self.dense_crf, self.scale_attention)
        if same != (other.name, other.domain_transform, other.dense_crf, other.scale_attention):
            return False
        return self.resolved() == other.resolved()


# What ModelConfig's fields were before recipes took any builder option: checkpoints of that
# time store all of them, also for builders that do not take some (at these values).
_LEGACY_MODEL_DEFAULTS: dict[str, Any] = {
    "backbone": "mobilenetv2",
    "output_stride": 16,
    "width_mult": 1.0,
    "channels": 256,
    "atrous_rates": (6, 12, 18),
    "multi_grid": None,
    "backbone_weights": None,
}


@dataclass
class TrainConfig:
    """The solver (TF DeepLab reference defaults: SGD 0.9, poly 0.9, LR 0.007, batch 8)."""

    steps: int = 30000
    optimizer: str = "sgd"  # "sgd" (DeepLab) or "adam" (Panoptic-DeepLab; momentum unused)
    batch_size: int = 8  # per process: under torchrun the global batch is this x world size
    lr: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 4e-5  # MobileNetV2 / Xception; 1e-4 for ResNet
    poly_power: float = 0.9
    warmup_steps: int = 0  # linear LR warm-up before the poly decay
    head_lr_mult: float = 1.0  # LR multiplier for everything but the backbone
    top_k_percent: float = 1.0  # hard-pixel mining: keep this share of the hardest pixels
    hard_mining_steps: int = 0  # ramp from all pixels down to top_k_percent over these steps
    class_weights: tuple[float, ...] | None = None
    aux_weight: float = 1.0  # weight of auxiliary outputs' losses (models returning a dict)
    freeze_bn: bool = False  # BN uses and keeps its running statistics (small batches)
    bn_momentum: float | None = None  # torch momentum; TF decay 0.9997 = 0.0003
    accumulate: int = 1  # micro-batches per optimizer step (effective batch = batch x this)
    clip_grad_norm: float | None = None
    checkpoint_every: int = 1000
    log_every: int = 1  # steps between train_log.jsonl / TensorBoard entries
    # mixed precision: "auto" (bf16 where the CPU/GPU runs it natively, else fp32; fp16 on
    # CUDA without bf16), "none", "bf16" (CPU or CUDA) or "fp16" (CUDA only)
    amp: str = "auto"
    channels_last: bool = True  # NHWC memory layout for the model and its inputs
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    out_dir: str = "runs/atrous"


@dataclass
class CRFConfig(CRFParams):
    """Dense CRF parameters (DeepLab v2's released values) for ``eval/predict --crf`` and the
    CRF-as-RNN layer (``model.dense_crf``), and the backend post-hoc refinement runs on."""

    backend: str = "auto"  # "reference" (pydensecrf2, CPU), "torch" (ours), "auto"

    def params(self) -> CRFParams:
        return CRFParams(**{k: v for k, v in dataclasses.asdict(self).items() if k != "backend"})


@dataclass
class DomainTransformConfig:
    """Domain transform parameters: ``eval/predict --domain-transform`` (image-gradient edges)
    and the DT-EdgeNet model (``model.domain_transform``)."""

    sigma_s: float = DEFAULT_SIGMA_S
    sigma_r: float = DEFAULT_SIGMA_R
    iterations: int = DT_ITERATIONS


@dataclass
class RefineConfig:
    crf: CRFConfig = field(default_factory=CRFConfig)
    domain_transform: DomainTransformConfig = field(default_factory=DomainTransformConfig)


@dataclass
class SearchConfig:
    """Auto-DeepLab's search (``atrous search``); defaults are the paper's (Sec. 3.3): 12 layers,
    F = 8, weights by SGD with cosine LR 0.025 -> 0.001 and weight decay 3e-4, alpha/beta by Adam
    (LR 3e-3, weight decay 1e-3) only after the first half (epoch 20 of 40), batch 2."""

    layers: int = 12
    filters: int = 8
    steps: int = 1000  # weight updates; alpha/beta updates run beside them after arch_start
    arch_start: float = 0.5  # share of the steps before alpha/beta start to move
    batch_size: int = 2
    lr: float = 0.025
    min_lr: float = 0.001
    weight_decay: float = 3e-4
    arch_lr: float = 3e-3
    arch_weight_decay: float = 1e-3
    seed: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


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


def _plain_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def model_spec(
    cfg: Config, num_classes: int, thing_classes: Sequence[int] | None = None
) -> ModelSpec:
    """The :class:`~atrous.models.ModelSpec` a recipe trains: its builder options with the data
    set's ``num_classes`` (and ``thing_classes``, for a panoptic builder the recipe leaves them
    to), and the wrappers it switches on with their ``refine:`` settings."""
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
    if thing_classes is not None and "thing_classes" in builder_parameters(cfg.model.name):
        kwargs.setdefault("thing_classes", list(thing_classes))
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
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply dotted ``key=value`` overrides (values parsed as YAML) to ``cfg`` in place."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.01")
        nested: Any = yaml.safe_load(text) if text else ""
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        _update(cfg, nested, "", f"--set {item}")
    check_model_options(cfg.model)
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
    return cfg
