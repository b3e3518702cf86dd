"""Deployment exports: ONNX (optional ``onnx``/``onnxruntime``; fp32 and int8), TorchScript
and ``torch.export`` programs (pt2); :func:`file_kind` tells them (and foreign files) apart."""

from .kinds import MODEL_KINDS, describe, file_kind
from .onnx import OnnxModel, export_onnx, load_onnx
from .pt2 import ProgramModel, export_pt2, load_pt2
from .torchscript import export_torchscript, is_torchscript, load_torchscript

__all__ = [
    "MODEL_KINDS",
    "OnnxModel",
    "ProgramModel",
    "describe",
    "export_onnx",
    "export_pt2",
    "export_torchscript",
    "file_kind",
    "is_torchscript",
    "load_onnx",
    "load_pt2",
    "load_torchscript",
]
