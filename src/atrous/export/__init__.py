"""Deployment exports: ONNX (optional ``onnx``/``onnxruntime``) and TorchScript."""

from .onnx import export_onnx
from .torchscript import export_torchscript, load_torchscript

__all__ = ["export_onnx", "export_torchscript", "load_torchscript"]
