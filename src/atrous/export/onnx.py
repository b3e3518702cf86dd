"""ONNX export of a DeepLab model: normalized ``image`` [N,3,H,W] -> ``logits`` or ``labels``.

Two exporters, one contract (the same input/output names, metadata and dynamic sizes):

- ``"dynamo"`` (the default where ``onnxscript`` is installed): ``torch.onnx.export(...,
  dynamo=True)`` on a ``torch.export`` program with symbolic batch/height/width (see
  :mod:`.pt2` for what makes every size symbolic, image pooling included). Opset 18.
  ``tests/export/test_deploy_exports.py`` checks it against eager at several sizes.
- ``"legacy"``: the TorchScript-based exporter (``dynamo=False``), kept where the dynamo one
  cannot be used: without ``onnxscript`` (the dynamo exporter's dependency, not ours); for
  opsets below 18 (the dynamo exporter writes opset 18+ and only converts down best-effort),
  which older runtimes (TensorRT 8.x, ONNX Runtime < 1.14) need; and, by default, for models
  the dynamo exporter cannot convert (scale attention: Python ``round`` on symbolic sizes).
  With ``dynamic_axes`` it records ``adaptive_avg_pool2d`` to 1x1 as ``GlobalAveragePool`` and
  every ``interpolate(size=...)`` as ``Shape``-driven ``Resize`` nodes, so one file runs at any
  height/width too.
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
    opset: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    exporter: str | None = None,
) -> Path:
    """Write ``model`` (exported in eval mode) to ``path`` as ONNX and return the path.

    Input ``"image"``: float [N,3,H,W], already normalized with the training mean/std. Output
    ``"logits"`` float [N,K,H,W], or ``"labels"`` int64 [N,H,W] when ``with_argmax``.
    ``dynamic`` makes batch, height and width symbolic; otherwise the graph is fixed to
    ``1x3xheight x width``. ``metadata`` (str -> JSON-able, e.g. ``classes``, ``mean``, ``std``)
    is stored as ``metadata_props`` with JSON-string values, with ``atrous_export`` (``1``)
    marking the file as one a later export may replace; any other existing file at ``path`` is
    refused (``ConfigError``). ``exporter`` is ``"dynamo"`` or ``"legacy"`` (see the module
    docstring; default: dynamo where ``onnxscript`` is installed and ``opset`` is 18 or more,
    falling back to legacy for a model dynamo cannot convert, else legacy); ``opset`` defaults
    to 18 (dynamo) or 17 (legacy).
    """
    check_exportable(model)
    import onnx  # optional dependency: pip install 'atrous[export]'

    chosen = exporter or default_exporter(opset)
    if chosen not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {chosen!r}")

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
            if chosen == "dynamo":
                try:
                    _export_dynamo(net, path, example, output, opset or 18, dynamic)
                except Exception:
                    # Legacy fallback, only when no exporter was asked for: the dynamo exporter
                    # cannot translate the Python size arithmetic some wrappers do on symbolic
                    # sizes (scale attention's round(size * scale)); the tracer records it as
                    # tensor ops. An explicit exporter="dynamo" raises instead.
                    if exporter == "dynamo":
                        raise
                    chosen = "legacy"
            if chosen == "legacy":
                torch.onnx.export(
                    net,
                    (example,),
                    str(path),
                    input_names=["image"],
                    output_names=[output],
                    opset_version=opset or 17,
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


def default_exporter(opset: int | None = None) -> str:
    """``"dynamo"`` where it can run (``onnxscript`` importable, opset 18+), else ``"legacy"``."""
    if opset is not None and opset < 18:
        return "legacy"
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError:
        return "legacy"
    return "dynamo"


def _export_dynamo(
    net: nn.Module, path: Path, example: Tensor, output: str, opset: int, dynamic: bool
) -> None:
    """``torch.onnx.export(dynamo=True)``: batch, height and width symbolic when ``dynamic``
    (the same ``Dim`` ranges as the pt2 programs)."""
    from ._program import dynamic_image_shapes

    shapes = (dynamic_image_shapes()["x"],) if dynamic else None
    if dynamic:  # an example batch of 1 would specialise the batch dimension
        example = torch.cat([example, example])
    program = torch.onnx.export(
        net,
        (example,),
        None,
        input_names=["image"],
        output_names=[output],
        opset_version=opset,
        dynamic_shapes=shapes,
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))


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
