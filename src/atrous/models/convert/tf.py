"""The TF DeepLab reference's checkpoints (tensorflow/models, research/deeplab, and its model
zoo) -> atrous models that compute what the TF graph computes.

:func:`from_tf_checkpoint` reads a TF1 checkpoint (the ``model.ckpt`` prefix, its ``.index``
file or their directory) with TensorFlow (extra ``atrous[tf]``), infers the head from the
variable names (ASPP with or without atrous branches, or a Dense Prediction Cell; with or
without the v3+ decoder; separable or plain convs) and the widths from their shapes, and builds
the model in TF-compatible mode: ``align_corners=True`` resizes (decoder and logits), the TF
backbones' BN eps and "SAME" padding (``tf_compat``), BN eps 1e-5 in ASPP / DPC / decoder (as
atrous has it), and the reference's ASPP concat order (image pooling first) by permuting the
projection's input channels. Image pooling averages the whole feature map, as the reference does
when its crop is the (padded) input. Inputs go in scaled to [-1, 1] (``x / 127.5 - 1``: mean =
std = 0.5 on [0, 1] images), the reference's ``_preprocess_zero_mean_unit_range``.

Every checkpoint variable maps to exactly one atrous tensor (:func:`tf_variable_map`); an
unknown or unused one, or a missing one, is an error naming it. Weights: conv HWIO -> OIHW,
depthwise HW(C)(M) -> (C*M)1HW, BN gamma / beta / moving mean / moving variance -> weight /
bias / running mean / running var.

    >>> model = from_tf_checkpoint("deeplabv3_pascal_train_aug/model.ckpt",
    ...                            variant="xception_65", num_classes=21)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import CheckpointError, ConfigError
from ..heads.aspp import ASPP_RATES
from ..heads.dpc import load_cell
from ..spec import ModelSpec
from ._tf_names import SLOTS, VARIANTS, entries, tf_variable_map, tf_variant

__all__ = ["VARIANTS", "convert_tf_variables", "from_tf_checkpoint", "tf_variable_map"]

_DPC = "meta_architecture"  # the reference's DPC scope
TF_MEAN = TF_STD = (0.5, 0.5, 0.5)
"""Normalization of [0, 1] images that gives the reference's [-1, 1] inputs."""


def _import_tf() -> Any:
    # torchvision first: importing it after TensorFlow crashes its extension (TF 2.21 with
    # torchvision 0.29); the atrous package has loaded it already, this keeps the order sure.
    import torchvision  # noqa: F401

    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError(
            'reading TF checkpoints needs TensorFlow: pip install "atrous[tf]"'
        ) from None
    return tf


def _prefix(path: str | Path) -> str:
    """The checkpoint prefix for ``path``: a prefix, its ``.index`` file or a directory."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.index"))
        if len(found) != 1:
            raise CheckpointError(
                f"{path}: expected one TF checkpoint (*.index) in the folder, found {len(found)}"
            )
        path = found[0]
    if path.suffix == ".index" or path.name.endswith(".data-00000-of-00001"):
        path = path.with_name(path.name.split(".index")[0].split(".data-")[0])
    if not path.with_name(path.name + ".index").is_file():
        raise CheckpointError(f"{path}: no TF checkpoint here (no {path.name}.index)")
    return str(path)


def _shape(shapes: Mapping[str, Sequence[int]], name: str, axis: int) -> int | None:
    return int(shapes[name][axis]) if name in shapes else None


def _architecture(
    shapes: Mapping[str, Sequence[int]],
    variant: str,
    *,
    num_classes: int,
    output_stride: int,
    atrous_rates: Sequence[int] | None,
    multi_grid: Sequence[int] | None,
    dpc_cell: Any,
    where: str,
) -> ModelSpec:
    """The atrous model spec of the checkpoint's network, from its names and shapes."""
    spec = VARIANTS[variant]
    names = set(shapes)
    if not any(n.startswith(spec.scope + "/") for n in names):
        scopes = sorted({n.split("/")[0] for n in names})
        raise CheckpointError(
            f"{where}: no variables under {spec.scope}/, so not a {variant} checkpoint "
            f"(its top-level scopes: {', '.join(scopes[:8])})"
        )
    logits = _shape(shapes, "logits/semantic/weights", 3)
    if logits is not None and logits != num_classes:
        raise CheckpointError(
            f"{where}: logits/semantic/weights predicts {logits} classes, not num_classes="
            f"{num_classes}"
        )
    first = _shape(shapes, f"{spec.scope}/{spec.first_conv}/weights", 3)
    width_mult = 1.0 if first is None else first / spec.base_width
    dpc = any(n.startswith(f"{_DPC}/") for n in names)
    decoder = "decoder/feature_projection0/weights" in names
    projection = f"{_DPC}/concat_projection" if dpc else "aspp0"
    channels = _shape(shapes, f"{projection}/weights", 3) or 256
    kwargs: dict[str, Any] = {"backbone": spec.backbone, "num_classes": num_classes}
    kwargs["output_stride"] = output_stride
    if width_mult != 1.0:
        kwargs["width_mult"] = width_mult
    if channels != 256:
        kwargs["channels"] = channels
    separable = {
        "ASPP": _separable(names, "aspp1", "aspp1_depthwise"),
        "decoder": _separable(
            names, "decoder/decoder_conv0/decoder_conv0_1", "decoder/decoder_conv0_depthwise"
        ),
    }
    known = {k: v for k, v in separable.items() if v is not None}
    if len(set(known.values())) > 1:
        raise CheckpointError(
            f"{where}: separable ASPP with a plain decoder (or the reverse) has no atrous model; "
            f"found {known}"
        )
    if dpc:
        kwargs["head"] = "dpc"
        cell = load_cell(dpc_cell)
        branches = sum(
            any(n.startswith((f"{_DPC}/branch{i}/", f"{_DPC}/branch{i}_")) for n in names)
            for i in range(len(cell) + 8)
        )
        if branches != len(cell):
            raise CheckpointError(
                f"{where}: the DPC has {branches} branches, the cell (dpc_cell) {len(cell)}"
            )
        if dpc_cell is not None:
            kwargs["dpc_cell"] = cell
    else:
        if "image_pooling/weights" not in names:
            raise CheckpointError(
                f"{where}: no image_pooling/weights; ASPP without image pooling "
                "(add_image_level_feature=False) has no atrous model"
            )
        count = sum(
            f"aspp{i}/weights" in names or f"aspp{i}_depthwise/depthwise_weights" in names
            for i in range(1, 9)
        )
        if atrous_rates is None:
            if count not in (0, len(ASPP_RATES[16])):
                raise ConfigError(
                    f"{where}: the ASPP has {count} atrous branches; pass atrous_rates (at OS16)"
                )
            atrous_rates = ASPP_RATES[16] if count else ()
        if len(atrous_rates) != count:
            raise ConfigError(
                f"{where}: the ASPP has {count} atrous branches, atrous_rates gives "
                f"{len(atrous_rates)}: {tuple(atrous_rates)}"
            )
        kwargs["atrous_rates"] = tuple(atrous_rates)
    if multi_grid is not None:
        kwargs["multi_grid"] = tuple(multi_grid)
    if decoder or known:
        kwargs["separable"] = next(iter(known.values()), True)
    if decoder and spec.family == "mobilenet":
        kwargs["low_level"] = "depthwise"  # TF ``layer_4/depthwise_output``
    kwargs.update(align_corners=True, tf_compat=True)
    return ModelSpec("deeplabv3plus" if decoder else "deeplabv3", kwargs)


def _separable(names: set[str], plain: str, depthwise: str) -> bool | None:
    if f"{depthwise}/depthwise_weights" in names:
        return True
    return False if f"{plain}/weights" in names else None


def _array(value: np.ndarray, kind: str, pooled_channels: int) -> np.ndarray:
    """A TF array in the layout of its atrous tensor."""
    if kind == "vector":
        return value
    if kind == "depthwise":  # [H, W, C, M] -> [C*M, 1, H, W]
        h, w, c, m = value.shape
        return value.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w)
    if kind == "pool_first":  # TF concat [pool, aspp0, ...]; atrous [aspp0, ..., pool]
        value = np.concatenate([value[:, :, pooled_channels:], value[:, :, :pooled_channels]], 2)
    return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:6])
    return shown + (f" ... ({len(names)} in all)" if len(names) > 6 else "")


def convert_tf_variables(
    shapes: Mapping[str, Sequence[int]],
    read: Callable[[str], np.ndarray],
    *,
    variant: str,
    num_classes: int,
    output_stride: int = 16,
    atrous_rates: Sequence[int] | None = None,
    multi_grid: Sequence[int] | None = None,
    dpc_cell: Any = None,
    where: str = "TF checkpoint",
) -> tuple[ModelSpec, dict[str, Tensor]]:
    """The atrous model spec and state dict for a TF checkpoint given as its variable
    ``shapes`` and a ``read(name)`` of each array; errors name ``where`` and the variable."""
    variant = tf_variant(variant)
    spec = _architecture(
        shapes,
        variant,
        num_classes=num_classes,
        output_stride=output_stride,
        atrous_rates=atrous_rates,
        multi_grid=multi_grid,
        dpc_cell=dpc_cell,
        where=where,
    )
    try:
        model = spec.build()
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from None
    expected = entries(model, variant)
    present = {n for n in shapes if not SLOTS.search(n)}
    unknown = sorted(present - {e.tf for e in expected})
    if unknown:
        raise CheckpointError(
            f"{where}: variables with no atrous counterpart in a {variant} model: "
            f"{_listing(unknown)}"
        )
    missing = sorted({e.tf for e in expected} - present)
    if missing:
        raise CheckpointError(
            f"{where}: variables a {variant} model needs are missing: {_listing(missing)}"
        )
    own = model.state_dict()
    state = dict(own)
    pooled = getattr(getattr(model.head, "pooling", None), "conv", None)
    pooled_channels = pooled[0].out_channels if pooled is not None else 0
    for entry in expected:
        value = _array(np.asarray(read(entry.tf)), entry.kind, pooled_channels)
        if tuple(value.shape) != tuple(own[entry.key].shape):
            raise CheckpointError(
                f"{where}: {entry.tf} has shape {list(shapes[entry.tf])}, the atrous "
                f"{entry.key} needs {list(own[entry.key].shape)} after the layout change "
                "(a depth multiplier or channel rounding this model does not have?)"
            )
        state[entry.key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return spec, state


def convert_tf_checkpoint(
    path: str | Path, *, variant: str, num_classes: int, **options: Any
) -> tuple[ModelSpec, dict[str, Tensor]]:
    """The atrous model spec and state dict of the TF checkpoint at ``path`` (see
    :func:`from_tf_checkpoint` for ``options``)."""
    prefix = _prefix(path)
    tf = _import_tf()
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as err:  # TF raises its own DataLossError / NotFoundError / ...
        raise CheckpointError(f"{prefix}: not a readable TF checkpoint ({err})") from None
    shapes = reader.get_variable_to_shape_map()
    return convert_tf_variables(
        shapes,
        reader.get_tensor,
        variant=variant,
        num_classes=num_classes,
        where=prefix,
        **options,
    )


def from_tf_checkpoint(
    path: str | Path,
    *,
    variant: str,
    num_classes: int,
    output_stride: int = 16,
    atrous_rates: Sequence[int] | None = None,
    multi_grid: Sequence[int] | None = None,
    dpc_cell: Any = None,
) -> nn.Module:
    """The atrous model (eval mode) with the weights of a TF DeepLab checkpoint.

    ``variant`` is the reference's ``model_variant`` (:data:`VARIANTS`: ``xception_65``,
    ``xception_71``, ``mobilenet_v2``, ``resnet_v1_101_beta``, ...; aliases such as
    ``xception65`` work). ``output_stride`` is the one to run at (the weights fit any).
    The checkpoint does not record the reference's flags ``atrous_rates`` (default 6, 12, 18
    when it has three atrous branches), ``multi_grid`` (ResNet block4) or
    ``dense_prediction_cell_json`` (``dpc_cell``; default the published Cityscapes cell):
    pass them if the model was trained with others. Feed it images normalized with
    :data:`TF_MEAN` / :data:`TF_STD`.
    """
    spec, state = convert_tf_checkpoint(
        path,
        variant=variant,
        num_classes=num_classes,
        output_stride=output_stride,
        atrous_rates=atrous_rates,
        multi_grid=multi_grid,
        dpc_cell=dpc_cell,
    )
    model = spec.build()
    model.load_state_dict(state)
    return model.eval()
