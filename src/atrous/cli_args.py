"""The ``atrous`` command line's arguments: one small parser function per command; each sets
``func`` to its handler from :mod:`atrous.cli` (``handlers``, by command name)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

Handlers = Mapping[str, Callable[[argparse.Namespace], Any]]
MODEL_FILE = "an atrous checkpoint or an exported file (ONNX fp32/int8, TorchScript, pt2)"


def _inference_args(p: argparse.ArgumentParser) -> None:
    """Options of the Predictor shared by eval and predict (v3 paper's evaluation protocol)."""
    p.add_argument("--output-stride", type=int, help="run at this output stride (e.g. 8)")
    p.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0],
        help="multi-scale inference, e.g. 0.5 0.75 1.0 1.25 1.5 1.75",
    )
    p.add_argument("--flip", action="store_true", help="also average left-right flipped inputs")
    p.add_argument("--crop", type=int, help="sliding-window size for large images")
    p.add_argument("--stride", type=int, help="sliding-window step (default: 2/3 of --crop)")


def _checkpoint_on_data_args(
    p: argparse.ArgumentParser, *, checkpoint_required: bool = True
) -> None:
    """A checkpoint and the dataset split to score it on (eval, crf-search)."""
    p.add_argument("--checkpoint", required=checkpoint_required, help=MODEL_FILE)
    p.add_argument("--data", required=True, help="dataset root (its official layout)")
    p.add_argument("--dataset", default="folder", help="dataset name (default: folder)")
    p.add_argument("--split", default="val", help="split name (default: val)")


def _refine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--crf",
        action="store_true",
        help="refine with the dense CRF (DeepLab v1/v2); settings: the recipe's refine.crf",
    )
    p.add_argument(
        "--domain-transform",
        action="store_true",
        help="refine with a domain transform guided by image edges; settings: "
        "refine.domain_transform",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override refine settings of the checkpoint's recipe, e.g. refine.crf.theta_alpha=80",
    )


def _train_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train from a YAML recipe (see configs/).",
    )
    p.add_argument("--config", required=True, help="YAML recipe with data/model/train sections")
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override recipe values, e.g. train.lr=0.01 data.root=/data/voc",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from train.out_dir/checkpoint.pt (same LR position and RNG)",
    )
    p.add_argument(
        "--save-estimates",
        type=int,
        default=0,
        metavar="N",
        help="weak supervision: write the E-step estimates of N training images at every "
        "checkpoint (out_dir/estimates/step_<k>/)",
    )
    p.set_defaults(func=handlers["train"])


def _search_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "search",
        help="search an Auto-DeepLab architecture (network path and cell) on a data set",
        description="Auto-DeepLab's bi-level search; writes architecture.json and a picture.",
    )
    p.add_argument("--config", required=True, help="YAML recipe with data/search sections")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override values")
    p.set_defaults(func=handlers["search"])


def _eval_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint or exported file: per-class IoU table and mIoU",
        description="Evaluate a checkpoint or exported file on a data folder; writes JSON.",
    )
    _checkpoint_on_data_args(p, checkpoint_required=False)
    p.add_argument(
        "--panoptic",
        metavar="PREDICTIONS_JSON",
        help="score panoptic predictions in COCO panoptic format (a panoptic_*.json beside its "
        "PNG folder) against the ground truth JSON given as --data; no checkpoint",
    )
    _inference_args(p)
    p.add_argument(
        "--trimap",
        type=int,
        nargs="+",
        metavar="W",
        help="also report mIoU within bands of these widths around boundaries",
    )
    p.add_argument("--per-image", action="store_true", help="per-image mIoU, worst first")
    _refine_args(p)
    p.add_argument("--out", help="JSON path (default: eval_<split>.json beside the checkpoint)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=handlers["eval"])


def _crf_search_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "crf-search",
        help="cross-validate the dense CRF's appearance kernel on a split (DeepLab v1/v2)",
        description="Grid-search w_appearance, theta_alpha and theta_beta (atrous.refine.GRID) "
        "on the first images of a split; prints the best and the --set line that uses it.",
    )
    _checkpoint_on_data_args(p)
    p.add_argument("--images", type=int, default=100, help="images to search on (paper: 100)")
    p.add_argument("--backend", default="auto", choices=("auto", "reference", "torch"))
    _inference_args(p)
    p.add_argument("--out", help="JSON path (default: crf_search.json beside the checkpoint)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=handlers["crf_search"])


def _predict_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images: palette PNGs and colour overlays",
        description="Write <stem>.png (class ids) and <stem>_overlay.jpg per image.",
    )
    p.add_argument("--checkpoint", help=MODEL_FILE)
    p.add_argument(
        "--weights",
        help="published weights instead (atrous.models.list_weights(); downloaded once)",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--save-attention",
        action="store_true",
        help="also write <stem>_attention_<scale>.png: each scale's weight (attention to scale)",
    )
    _inference_args(p)
    _refine_args(p)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=handlers["predict"])


def _export_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (fp32 or int8), TorchScript or pt2 for deployment",
        description="Export a checkpoint; the file carries classes, palette and normalization. "
        "eval, predict and serve run every format.",
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("onnx", "torchscript", "pt2"), default="onnx")
    p.add_argument("--out", required=True, help="output file (.onnx, .pt or .pt2)")
    p.add_argument("--height", type=int, default=513, help="traced input height")
    p.add_argument("--width", type=int, default=513, help="traced input width")
    p.add_argument("--dynamic", action="store_true", help="ONNX: any batch, height and width")
    p.add_argument("--with-argmax", action="store_true", help="ONNX: output class ids")
    p.add_argument(
        "--exporter",
        choices=("dynamo", "legacy"),
        help="ONNX: torch.onnx's dynamo exporter (default where onnxscript is installed) or "
        "the TorchScript-based one",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8, calibrated on --calibration: ONNX Runtime static quantization (QDQ, "
        "per-channel weights) for onnx, PT2E (torchao's x86 quantizer) for pt2",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR_OR_SPLIT",
        help="--int8's calibration images: a folder of images, or a split of --data",
    )
    p.add_argument("--data", help="dataset root for a --calibration split")
    p.add_argument("--dataset", default="folder", help="dataset name (default: folder)")
    p.add_argument(
        "--calibration-images", type=int, default=64, metavar="N", help="images to calibrate on"
    )
    p.set_defaults(func=handlers["export"])


def _convert_tf_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "convert-tf",
        help="convert a TF DeepLab checkpoint (the model zoo's) to an atrous checkpoint",
        description="Read a TF1 checkpoint of the TF DeepLab reference (extra atrous[tf]) and "
        "write an atrous checkpoint that computes what the TF graph computes.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="the model.ckpt prefix, its .index, or a folder"
    )
    p.add_argument(
        "--variant",
        required=True,
        help="the reference's model_variant: xception_41/65/71, mobilenet_v2, "
        "resnet_v1_50_beta, resnet_v1_101_beta (aliases like xception65 work)",
    )
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--out", required=True, help="the atrous checkpoint to write (.pt)")
    p.add_argument("--output-stride", type=int, default=16, help="stride to run at (default 16)")
    p.add_argument("--atrous-rates", type=int, nargs="*", help="ASPP rates at OS16 if not 6 12 18")
    p.add_argument("--multi-grid", type=int, nargs="+", help="ResNet block4 rates, e.g. 1 2 4")
    p.add_argument("--dpc-cell", help="the DPC cell JSON if not the published Cityscapes one")
    p.add_argument(
        "--classes", help="a text file of class names, one a line (default: by --num-classes: "
        "21 VOC, 19 Cityscapes, 151 ADE20K)"
    )  # fmt: skip
    p.set_defaults(func=handlers["convert_tf"])


def _data_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "data",
        help="inspect a dataset: `atrous data check` finds bad pairs, counts classes",
        description="Dataset tools.",
    )
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = data_sub.add_parser(
        "check",
        help="scan a dataset: missing masks, size mismatches, bad labels, class frequencies",
        description="Scan every image/mask pair; exits 1 if any is missing or inconsistent.",
    )
    q.add_argument("--dataset", default="folder", help="dataset name (default: folder)")
    q.add_argument("--root", required=True, help="dataset root in its official layout")
    q.add_argument("--split", default=None, help="split (default: every pair)")
    q.add_argument("--num-classes", type=int, help="folder datasets without classes.json")
    q.add_argument("--boxes", help="check a boxes JSON or VOC Annotations folder instead")
    q.add_argument("--image-labels", help="check an image-labels JSON instead")
    q.set_defaults(func=handlers["data_check"])


def _serve_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "serve",
        help="a web demo of a model (Gradio, extra atrous[serve])",
        description="Serve a checkpoint, published weights or an exported file in the browser.",
    )
    p.add_argument("file", nargs="?", help="an exported file (ONNX, TorchScript, pt2)")
    p.add_argument("--checkpoint", help=MODEL_FILE)
    p.add_argument("--weights", help="published weights (atrous.models.list_weights())")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(func=handlers["serve"])


def _demo_parser(sub: Any, handlers: Handlers) -> None:
    p = sub.add_parser(
        "demo",
        help="train and evaluate on a generated data set, offline",
        description="Make a synthetic data set, train DeepLabv3+ on it, evaluate "
        "on its held-out split and write predictions.",
    )
    p.add_argument(
        "--task",
        default="semantic",
        help="which task's demo: semantic (DeepLabv3+, mIoU; the default), panoptic "
        "(Panoptic-DeepLab, PQ and Parsing Covering), personlab (keypoint and mask AP), "
        "masklab (mask and box AP), parts (HAZN, part mIoU by object size), words (a "
        "deep structured model: character and word accuracy) or vqa (ABC-CNN on shape "
        "questions: accuracy per question type and attention IoU)",
    )
    p.add_argument(
        "--out", help="output folder (default: ./atrous-demo, ./atrous-demo-<task> for others)"
    )
    p.add_argument("--steps", type=int, help="training steps (default: the demo recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--panoptic",
        dest="task",
        action="store_const",
        const="panoptic",
        help="the same as --task panoptic",
    )
    p.set_defaults(func=handlers["demo"])


def build_parser(handlers: Handlers) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atrous", description="DeepLab semantic segmentation: train, evaluate, predict."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        metavar="N",
        help="refuse images over N pixels (Pillow's decompression-bomb limit, default "
        "89,478,485; 0: no limit)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub, handlers)
    _search_parser(sub, handlers)
    _eval_parser(sub, handlers)
    _crf_search_parser(sub, handlers)
    _predict_parser(sub, handlers)
    _export_parser(sub, handlers)
    _convert_tf_parser(sub, handlers)
    _data_parser(sub, handlers)
    _serve_parser(sub, handlers)
    _demo_parser(sub, handlers)
    return parser
