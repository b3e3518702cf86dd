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

from ._exportable import check_exportable


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
    is stored as ``metadata_props`` with JSON-string values.
    """
    check_exportable(model)
    import onnx  # optional dependency: pip install 'atrous[export]'

    path = Path(path)
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
    props = _metadata_strings(metadata)
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
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        output = self.session.get_outputs()[0]
        if output.name != "logits":
            raise ValueError(
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
    return model, {key: json.loads(value) for key, value in props.items()}
