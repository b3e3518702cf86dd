"""Deployment exports: ONNX (optional ``onnx``/``onnxruntime``) and TorchScript."""

from .onnx import OnnxModel, export_onnx, load_onnx
from .torchscript import export_torchscript, is_torchscript, load_torchscript

__all__ = [
    "OnnxModel",
    "export_onnx",
    "export_torchscript",
    "is_torchscript",
    "load_onnx",
    "load_torchscript",
]
