"""int8 ONNX: ONNX Runtime static post-training quantization of an fp32 export.

``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantized
op, which ONNX Runtime fuses into int8 kernels and TensorRT reads as explicit quantization) with
per-channel int8 weights and uint8 activations (U8S8: the pairing ONNX Runtime's x86 kernels
run fastest with VNNI). Activation ranges come from running the fp32 model on calibration
images, which the caller preprocesses exactly as the predictor will at inference
(:func:`atrous.inference.calibration.calibration_inputs`); MinMax ranges by default.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..errors import AtrousError, ConfigError
from ._target import check_export_target

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


class _Reader:
    """A ``CalibrationDataReader``: one normalized image ``[1,3,H,W]`` float32 per call."""

    def __init__(self, inputs: Iterable[Tensor], name: str) -> None:
        self._inputs: Iterator[Tensor] = iter(inputs)
        self.name = name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._inputs, None)
        if image is None:
            return None
        self.count += 1
        array = image.detach().float().cpu().numpy()
        return {self.name: array[None] if array.ndim == 3 else array}

    def rewind(self) -> None:  # ONNX Runtime's reader interface; a single pass is enough here
        pass


def quantize_onnx(
    fp32_path: str | Path,
    out: str | Path,
    inputs: Iterable[Tensor],
    *,
    method: str = "minmax",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the int8 (QDQ) version of the fp32 ONNX file ``fp32_path`` to ``out``, calibrated
    on ``inputs`` (normalized ``[3,H,W]`` or ``[1,3,H,W]`` tensors, any sizes if the file has
    dynamic height/width), keeping its metadata and adding ``metadata`` (JSON-able values).
    Raises ``ConfigError`` when ``inputs`` is empty."""
    import onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    out = check_export_target(out)
    source = onnx.load(str(fp32_path))
    props = {p.key: p.value for p in source.metadata_props}
    reader = _Reader(inputs, source.graph.input[0].name)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds constants and infers the (symbolic) shapes the quantizer needs.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        staged = Path(tmp) / "int8.onnx"
        q.quantize_static(
            str(prepared),
            str(staged),
            reader,
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method={
                "minmax": q.CalibrationMethod.MinMax,
                "percentile": q.CalibrationMethod.Percentile,
                "entropy": q.CalibrationMethod.Entropy,
            }[method],
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        if reader.count == 0:
            raise ConfigError("int8 calibration got no images; give a folder or split with some")
        proto = onnx.load(str(staged))
    extra = {"int8": json.dumps({"calibration_images": reader.count, "method": method})}
    for key, value in (metadata or {}).items():
        extra[key] = json.dumps(value)
    onnx.helper.set_model_props(proto, {**props, **extra})
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


def export_onnx_int8(
    model: Any,
    out: str | Path,
    inputs: Iterable[Tensor],
    *,
    metadata: dict[str, Any] | None = None,
    height: int = 513,
    width: int = 513,
    exporter: str | None = None,
    method: str = "minmax",
) -> Path:
    """``model`` as an int8 ONNX file: exported in fp32 with dynamic batch/height/width
    (:func:`~.onnx.export_onnx`, ``exporter``), then :func:`quantize_onnx` on ``inputs``."""
    from .onnx import export_onnx

    out = check_export_target(out)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(
            model, Path(tmp) / "fp32.onnx", height=height, width=width, dynamic=True,
            metadata=metadata, exporter=exporter,
        )  # fmt: skip
        return quantize_onnx(fp32, out, inputs, method=method)


def quantize_pt2e(
    model: Any, inputs: Iterable[Tensor], *, height: int = 65, width: int = 65
) -> tuple[Any, int]:
    """``model`` as a PT2E int8 ``torch.export`` program: exported with dynamic sizes
    (:func:`~.pt2.export_program`), annotated by torchao's ``X86InductorQuantizer`` (static,
    per-channel int8 weights, uint8 activations; the recipe its oneDNN int8 kernels fuse),
    calibrated on ``inputs`` (normalized images) and converted, then exported again with
    dynamic sizes; returns the program and the number of calibration images. Eager calls run
    the reference (quantize/dequantize) graph; the int8 kernels come with ``torch.compile``
    (``Predictor(..., compile=True)``). Needs ``torchao`` (extra ``atrous[export]``):
    ``torch.ao.quantization``'s PT2E is no longer in this torch (2.14)."""
    import torch

    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as err:
        raise ImportError("PT2E int8 needs torchao: pip install 'atrous[export]'") from err
    from ._program import dynamic_image_shapes, export_program

    program = export_program(model, height=height, width=width)
    quantizer = x86.X86InductorQuantizer().set_global(
        x86.get_default_x86_inductor_quantization_config()
    )
    try:
        prepared = prepare_pt2e(program.module(), quantizer)
    except ValueError as err:  # e.g. ResNet-50's conv + add + ReLU (benchmarks/results/deploy.md)
        raise AtrousError(
            f"PT2E int8: torchao's X86InductorQuantizer cannot annotate this model's graph "
            f"({err}); export int8 ONNX instead (atrous export --format onnx --int8)"
        ) from err
    count = 0
    with torch.no_grad():
        for image in inputs:
            prepared(image[None] if image.ndim == 3 else image)
            count += 1
    if count == 0:
        raise ConfigError("int8 calibration got no images; give a folder or split with some")
    converted = convert_pt2e(prepared)
    example = torch.zeros(2, 3, height, width)
    shapes = (dynamic_image_shapes()["x"],)
    return torch.export.export(converted, (example,), dynamic_shapes=shapes), count
