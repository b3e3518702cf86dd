"""Training configs: dataclasses loaded from self-contained YAML recipes, plus ``key=value``.

A recipe has the sections ``data``, ``model``, ``train`` and (optional) ``refine``; every key
is checked against the dataclass fields, and an unknown key or a value of the wrong type is an
error naming it. The loader is written here (about 60 lines) rather than pulling in a config
framework: the recipes are flat dataclasses and the errors must name the recipe file.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .errors import ConfigError
from .refine.crf import CRFParams
from .refine.domain_transform import DEFAULT_SIGMA_R, DEFAULT_SIGMA_S
from .refine.domain_transform import ITERATIONS as DT_ITERATIONS


@dataclass
class DataConfig:
    """Where the data is and how it is augmented (defaults: DeepLab on PASCAL VOC)."""

    dataset: str = "folder"  # a name in atrous.data.DATASETS: folder, voc, cityscapes, ...
    root: str = ""
    train_split: str = "train"
    val_split: str | None = "val"
    num_classes: int | None = None  # folder only; None: from the folder's classes.json
    crop_size: int = 513
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_step: float = 0.25
    hflip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_workers: int = 2


@dataclass
class ModelConfig:
    """A builder from :data:`atrous.models.MODELS` and its keyword arguments."""

    name: str = "deeplabv3plus"
    backbone: str = "mobilenetv2"
    output_stride: int = 16
    width_mult: float = 1.0
    channels: int = 256
    atrous_rates: tuple[int, int, int] = (6, 12, 18)  # ASPP rates at OS16 (v3 paper)
    multi_grid: tuple[int, ...] | None = None  # ResNet block4 unit rates, e.g. [1, 2, 4] (v3)
    backbone_weights: str | None = None  # "imagenet": download published backbone weights
    # Resize convention: False (torchvision's) makes multiples of the output stride exact, True
    # (the TF reference's) sizes k*OS+1; inputs are padded to the next exact size either way.
    align_corners: bool = False
    # DT-EdgeNet (Chen et al., CVPR 2016): an EdgeNet on the backbone features guides a domain
    # transform on the logits, trained end to end; its sigmas are refine.domain_transform's.
    domain_transform: bool = False
    # CRF-as-RNN (Zheng et al., 2015): a learnable dense CRF layer on the logits, trained end
    # to end; its kernel widths and starting weights are refine.crf's.
    dense_crf: bool = False

    def builder_kwargs(self) -> dict[str, Any]:
        """The options builder ``name`` takes. One it does not take must stay at its default,
        else it is an error naming the key (so a recipe never sets a value that is ignored)."""
        from .models import MODELS

        accepted = inspect.signature(MODELS[self.name]).parameters if self.name in MODELS else None
        kwargs = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "domain_transform", "dense_crf"):  # not builder options
                continue
            if accepted is None or f.name in accepted:
                kwargs[f.name] = value
            elif value != f.default:
                raise ConfigError(
                    f"model.{f.name} = {value!r}: builder {self.name!r} has no such option"
                )
        return kwargs


@dataclass
class TrainConfig:
    """The solver (TF DeepLab reference defaults: SGD 0.9, poly 0.9, LR 0.007, batch 8)."""

    steps: int = 30000
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
    amp: str = "none"  # mixed precision: "none", "bf16" (CPU or CUDA) or "fp16" (CUDA only)
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
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against a field's type hint; lists become tuples and ints floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source)
    sequence = isinstance(value, (list, tuple))
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
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        path = f"{prefix}{key}"
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
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), for YAML dumps and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return list(v) if isinstance(v, tuple) else v

    return plain(dataclasses.asdict(cfg))


def from_dict(values: dict[str, Any], source: str = "checkpoint") -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict`'s output, with the same checks."""
    cfg = Config()
    _update(cfg, values, "", source)
    return cfg
