"""The ``atrous`` command line: argparse -> library calls, nothing more."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import AtrousError


def _search(args: argparse.Namespace) -> None:
    from .config import load_config
    from .training.search import search

    result = search(load_config(args.config, args.set))
    arch = result["architecture"]
    strides = " ".join(str(4 * 2**level) for level in arch["path"])
    print(f"path (output stride per layer): {strides}")
    blocks = [
        f"{arch['cell']['operations'][i]}({arch['cell']['inputs'][i]})"
        for i in range(len(arch["cell"]["operations"]))
    ]
    print("cell: " + ", ".join(blocks))
    print(
        f"searched in {result['seconds']:.0f} s, peak memory {result['peak_memory_mb']:.0f} MiB; "
        f"wrote {result['path']} and {result['picture']}"
    )
    print(f"train it: --set model.name=auto_deeplab model.architecture={result['path']}")


def _train(args: argparse.Namespace) -> None:
    from .config import load_config
    from .training import train

    train(load_config(args.config, args.set), resume=args.resume)


def _eval(args: argparse.Namespace) -> None:
    from .evaluation import (
        evaluate_checkpoint,
        format_table,
        panoptic_table,
        refinement_table,
        trimap_line,
    )
    from .evaluation.report import worst_images_line
    from .metrics import write_json

    refiners = _refiners(args)
    out = Path(args.out or Path(args.checkpoint).with_name(f"eval_{args.split or 'all'}.json"))
    picture = out.with_name(f"{out.stem}_refinement.png") if refiners else None
    result, classes = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        split=args.split,
        dataset=args.dataset,
        device=args.device,
        trimap_widths=args.trimap or (),
        per_image=args.per_image,
        refiners=refiners,
        picture=picture,
        **_predictor_options(args),
    )
    print(format_table(result, classes))
    if "panoptic" in result:
        print(panoptic_table(result["panoptic"]))
    if "trimap" in result:
        print(trimap_line(result["trimap"]))
    if "refined" in result:
        print(refinement_table(result))
        columns = " | ".join(["image", "ground truth", "no refinement", *result["refined"]])
        print(f"wrote {picture} ({columns})")
    if "per_image" in result:
        print(worst_images_line(result["per_image"]))
    write_json(out, result, classes=list(classes), split=args.split, data=str(args.data))
    print(f"mIoU {100 * result['miou']:.2f}  (written to {out})")


def _crf_search(args: argparse.Namespace) -> None:
    import json

    from .evaluation import crf_search_table, search_crf_checkpoint

    found = search_crf_checkpoint(
        args.checkpoint,
        args.data,
        split=args.split,
        dataset=args.dataset,
        images=args.images,
        device=args.device,
        backend=args.backend,
        **_predictor_options(args),
    )
    print(crf_search_table(found))
    out = args.out or Path(args.checkpoint).with_name("crf_search.json")
    Path(out).write_text(json.dumps(found, indent=2) + "\n")
    print(f"all combinations written to {out}")


def _predict(args: argparse.Namespace) -> int:
    from .evaluation import chain
    from .inference import find_images, predict_to_files
    from .loader import load

    loaded = load(args.checkpoint, checkpoint_only=True)
    refine = chain(list(_refiners(args, loaded.state.get("config")).values()))
    predictor = loaded.predictor(device=args.device, refine=refine, **_predictor_options(args))
    if args.save_attention and not hasattr(loaded.model, "attention_maps"):
        from .errors import ConfigError

        raise ConfigError(
            f"--save-attention: {args.checkpoint} was not trained with model.scale_attention"
        )
    written = predict_to_files(
        predictor, find_images(args.inputs), args.out, attention=args.save_attention
    )
    print(f"wrote {len(written)} masks and overlays to {args.out}")
    if written.failed:
        print(f"atrous predict: {len(written.failed)} image(s) not read:", file=sys.stderr)
        for path, reason in written.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> None:
    from .export import export_onnx, export_torchscript
    from .loader import load_model

    model, state = load_model(args.checkpoint)
    metadata = {key: state[key] for key in ("classes", "palette", "mean", "std", "model_spec")}
    if args.format == "onnx":
        export_onnx(
            model,
            args.out,
            height=args.height,
            width=args.width,
            dynamic=args.dynamic,
            with_argmax=args.with_argmax,
            metadata=metadata,
        )
    else:
        export_torchscript(model, args.out, metadata=metadata, height=args.height, width=args.width)
    print(f"wrote {args.out} ({args.format})")


def _data_check(args: argparse.Namespace) -> int:
    from .data import build_dataset
    from .data.check import check_dataset

    options = {"num_classes": args.num_classes} if args.num_classes else {}
    split = args.split
    if split is None and args.dataset != "folder":  # official layouts are read split by split
        split = "train"
    dataset = build_dataset(args.dataset, args.root, split, strict=False, **options)
    report = check_dataset(dataset)
    print(report.format())
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo, run_panoptic_demo

    if args.panoptic:
        from .evaluation import panoptic_table

        out = args.out if args.out != "atrous-demo" else "atrous-demo-panoptic"
        result = run_panoptic_demo(out, steps=args.steps, seed=args.seed, device=args.device)
        metrics = result["metrics"]
        print(panoptic_table(metrics["panoptic"]))
        print(
            f"panoptic demo: PQ {100 * metrics['panoptic']['pq']:.2f}, PC "
            f"{100 * metrics['panoptic']['pc']:.2f}, mIoU {100 * metrics['miou']:.2f} on the "
            f"held-out split in {result['seconds']:.0f} s; checkpoint and predictions/ in {out}"
        )
        return
    result = run_demo(args.out, steps=args.steps, seed=args.seed, device=args.device)
    print(
        f"demo: mIoU {100 * result['metrics']['miou']:.2f} on the held-out split in "
        f"{result['seconds']:.0f} s; checkpoint, metrics.json and predictions/ in {args.out}"
    )


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


def _checkpoint_on_data_args(p: argparse.ArgumentParser) -> None:
    """A checkpoint and the dataset split to score it on (eval, crf-search)."""
    p.add_argument("--checkpoint", required=True)
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


def _refiners(args: argparse.Namespace, saved_config: Any = None) -> dict[str, Any]:
    """The refinements asked for, set up from the checkpoint's recipe and ``--set``."""
    from .checkpoint import load_checkpoint
    from .errors import ConfigError
    from .evaluation import refiners_from_recipe

    bad = [item for item in args.set if not item.startswith("refine.")]
    if bad:
        raise ConfigError(f"--set {bad[0]!r}: only refine.* settings apply to {args.command}")
    if not (args.crf or args.domain_transform):
        return {}
    if saved_config is None:
        saved_config = load_checkpoint(args.checkpoint).get("config")
    return refiners_from_recipe(
        saved_config,
        crf=args.crf,
        domain_transform=args.domain_transform,
        overrides=args.set,
        source=str(args.checkpoint),
    )


def _predictor_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "scales": tuple(args.scales),
        "flip": args.flip,
        "output_stride": args.output_stride,
        "crop": args.crop,
        "stride": args.stride,
    }


def _train_parser(sub: Any) -> None:
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
    p.set_defaults(run=_train)


def _search_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="search an Auto-DeepLab architecture (network path and cell) on a data set",
        description="Auto-DeepLab's bi-level search; writes architecture.json and a picture.",
    )
    p.add_argument("--config", required=True, help="YAML recipe with data/search sections")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override values")
    p.set_defaults(run=_search)


def _eval_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: per-class IoU table and mIoU",
        description="Evaluate a checkpoint on a data folder; writes JSON.",
    )
    _checkpoint_on_data_args(p)
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
    p.set_defaults(run=_eval)


def _crf_search_parser(sub: Any) -> None:
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
    p.set_defaults(run=_crf_search)


def _predict_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images: palette PNGs and colour overlays",
        description="Write <stem>.png (class ids) and <stem>_overlay.jpg per image.",
    )
    p.add_argument("--checkpoint", required=True)
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
    p.set_defaults(run=_predict)


def _export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript for deployment",
        description="Export a checkpoint; the file carries classes, palette and normalization.",
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--height", type=int, default=513, help="traced input height")
    p.add_argument("--width", type=int, default=513, help="traced input width")
    p.add_argument("--dynamic", action="store_true", help="ONNX: any batch, height and width")
    p.add_argument("--with-argmax", action="store_true", help="ONNX: output class ids")
    p.set_defaults(run=_export)


def _data_parser(sub: Any) -> None:
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
    q.set_defaults(run=_data_check)


def _demo_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train and evaluate on a generated data set, offline",
        description="Make a synthetic data set, train DeepLabv3+ on it, evaluate "
        "on its held-out split and write predictions.",
    )
    p.add_argument("--out", default="atrous-demo", help="output folder (default: ./atrous-demo)")
    p.add_argument("--steps", type=int, help="training steps (default: the demo recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--panoptic",
        action="store_true",
        help="the panoptic demo: Panoptic-DeepLab, PQ and Parsing Covering "
        "(into ./atrous-demo-panoptic)",
    )
    p.set_defaults(run=_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atrous", description="DeepLab semantic segmentation: train, evaluate, predict."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _search_parser(sub)
    _eval_parser(sub)
    _crf_search_parser(sub)
    _predict_parser(sub)
    _export_parser(sub)
    _data_parser(sub)
    _demo_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except AtrousError as err:
        print(f"atrous {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
