"""ONNX export of a DeepLab model: normalized ``image`` [N,3,H,W] -> ``logits`` or ``labels``.

Uses the TorchScript-based ("legacy") exporter, ``torch.onnx.export(..., dynamo=False)``: with
``dynamic_axes`` it records the image-pooling branch (``adaptive_avg_pool2d`` to 1x1 becomes
``GlobalAveragePool``) and every ``interpolate(size=x.shape[-2:])`` as ``Shape``-driven ``Resize``
nodes, so one file runs at any height/width. The dynamo exporter (torch's default) needs
``onnxscript`` and specialises sizes unless dynamic shapes are declared per dimension; the
legacy path is the one checked by ``tests/export/test_export.py`` at sizes other than the
traced one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ._exportable import check_exportable
from ._target import check_export_target


class _Argmax(nn.Module):
    """Wraps a model so the graph ends in per-pixel labels (int64 [N,H,W])."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).argmax(dim=1)


def _metadata_strings(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Every value as a JSON string (so lists like class names and mean/std round-trip)."""
    if not metadata:
        return {}
    out = {}
    for key, value in metadata.items():
        try:
            out[str(key)] = json.dumps(value)
        except TypeError as err:
            raise TypeError(
                f"export metadata key {key!r}: value of type {type(value).__name__} is not "
                "JSON-serialisable; pass lists, numbers, strings or dicts"
            ) from err
    return out


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int = 513,
    width: int = 513,
    dynamic: bool = False,
    with_argmax: bool = False,
    opset: int = 17,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (exported in eval mode) to ``path`` as ONNX and return the path.

    Input ``"image"``: float [N,3,H,W], already normalized with the training mean/std. Output
    ``"logits"`` float [N,K,H,W], or ``"labels"`` int64 [N,H,W] when ``with_argmax``.
    ``dynamic`` makes batch, height and width symbolic; otherwise the graph is fixed to
    ``1x3xheight x width``. ``metadata`` (str -> JSON-able, e.g. ``classes``, ``mean``, ``std``)
    is stored as ``metadata_props`` with JSON-string values, with ``atrous_export`` (``1``)
    marking the file as one a later export may replace; any other existing file at ``path`` is
    refused (``ConfigError``).
    """
    check_exportable(model)
    import onnx  # optional dependency: pip install 'atrous[export]'

    path = check_export_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    net = _Argmax(model) if with_argmax else model
    output = "labels" if with_argmax else "logits"
    dynamic_axes = None
    if dynamic:
        dims = {0: "batch", 2: "height", 3: "width"}
        out_dims = {0: "batch", 1: "height", 2: "width"} if with_argmax else dims
        dynamic_axes = {"image": dims, output: out_dims}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros(1, 3, height, width, device=device)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation / tracer warnings
            torch.onnx.export(
                net,
                (example,),
                str(path),
                input_names=["image"],
                output_names=[output],
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.train(was_training)
    props = _metadata_strings({"atrous_export": 1, **(metadata or {})})
    if props:
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, props)
        onnx.save(proto, str(path))
    return path


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call a :class:`Predictor` makes:
    normalized ``[N,3,H,W]`` float tensor in, logits tensor out (on the CPU)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError("running ONNX files needs: pip install 'atrous[export]'") from err
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own types for corrupt files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: not a readable ONNX file ({first})") from None
        self.input_name = self.session.get_inputs()[0].name
        output = self.session.get_outputs()[0]
        if output.name != "logits":
            raise CheckpointError(
                f"{path}: its output is {output.name!r}; the Predictor needs logits "
                "(export without --with-argmax)"
            )

    def forward(self, x: Tensor) -> Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def load_onnx(path: str | Path) -> tuple[OnnxModel, dict[str, Any]]:
    """An ONNX file written by :func:`export_onnx` as a callable model, and its metadata."""
    model = OnnxModel(path)
    props = model.session.get_modelmeta().custom_metadata_map
    try:
        meta = {key: json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata is not JSON ({err})") from None
    _check_finite_initializers(path)
    return model, meta


def _check_finite_initializers(path: str | Path) -> None:
    """Raise ``CheckpointError`` naming the first weights that hold NaN or Inf (needs the
    ``onnx`` package, part of ``atrous[export]``; skipped without it)."""
    try:
        import numpy as np
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return
    proto = onnx.load(str(path))
    bad = []
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad.append(init.name)
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or Inf ({', '.join(bad[:3])}); "
            "export an earlier checkpoint"
        )
