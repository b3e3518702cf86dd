"""Logits -> labels."""

from .forward import InferenceOptions, build_forward
from .instances import draw_instances, instances_json, save_instances
from .memory import AUTO_CROP, memory_budget
from .outputs import MANIFEST, check_output_dir, check_output_file, json_report_with, plan_outputs
from .predictor import Predictor, WindowNotice, check_finite, resolve_device, to_image_tensor
from .sliding import sliding_window, window_starts
from .tta import CITYSCAPES_SCALES, VOC_SCALES, multiscale_probs, tta_log_probs
from .writer import WrittenFiles, find_images, predict_to_files, save_prediction

__all__ = [
    "AUTO_CROP",
    "MANIFEST",
    "WindowNotice",
    "check_finite",
    "check_output_dir",
    "check_output_file",
    "draw_instances",
    "instances_json",
    "json_report_with",
    "memory_budget",
    "plan_outputs",
    "CITYSCAPES_SCALES",
    "InferenceOptions",
    "WrittenFiles",
    "build_forward",
    "Predictor",
    "VOC_SCALES",
    "multiscale_probs",
    "resolve_device",
    "find_images",
    "predict_to_files",
    "save_instances",
    "save_prediction",
    "sliding_window",
    "to_image_tensor",
    "tta_log_probs",
    "window_starts",
]
