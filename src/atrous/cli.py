"""The ``atrous`` command line: argparse -> library calls, nothing more."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_args import build_parser as _build_parser
from .errors import AtrousError, ConfigError

__all__ = ["build_parser", "main"]


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

    overrides = list(args.set)
    if args.save_estimates:
        overrides.append(f"train.save_estimates={args.save_estimates}")
    train(load_config(args.config, overrides), resume=args.resume)


def _eval(args: argparse.Namespace) -> None:
    from .evaluation import (
        evaluate_checkpoint,
        format_table,
        instances_table,
        panoptic_table,
        people_table,
        refinement_table,
        size_table,
        trimap_line,
    )
    from .evaluation.checkpoints import check_eval_outputs
    from .evaluation.report import worst_images_line
    from .metrics import write_json

    if args.panoptic:
        return _eval_coco_panoptic(args)
    if not args.checkpoint:
        raise ConfigError("atrous eval needs --checkpoint (or --panoptic PREDICTIONS_JSON)")
    out = Path(args.out or Path(args.checkpoint).with_name(f"eval_{args.split or 'all'}.json"))
    refining = args.crf or args.domain_transform
    picture = out.with_name(f"{out.stem}_refinement.png") if refining else None
    check_eval_outputs(out, picture)  # before the checkpoint is read and the work starts
    loaded = _load_model_file(args.checkpoint, args)  # read once, for refiners and scoring
    refiners = _refiners(args, loaded.state.get("config"))
    result, classes = evaluate_checkpoint(
        loaded,
        args.data,
        out=out,
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
    if "keypoint_ap" in result:
        print(people_table(result))
    elif "box_ap" in result:
        print(instances_table(result))
    if "miou_by_size" in result:
        print(size_table(result))
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


def _eval_coco_panoptic(args: argparse.Namespace) -> None:
    from .evaluation import panoptic_table
    from .evaluation.coco_panoptic import score_coco_panoptic
    from .inference import check_output_file, json_report_with
    from .metrics import write_json

    out = Path(args.out or Path(args.panoptic).with_name("panoptic_scores.json"))
    check_output_file(out, replaceable=json_report_with("pq"))
    result = score_coco_panoptic(args.data, args.panoptic)
    print(panoptic_table(result))
    write_json(out, result, predictions=str(args.panoptic), ground_truth=str(args.data))
    print(f"PQ {100 * result['pq']:.2f}  PC {100 * result['pc']:.2f} over {result['images']} "
          f"images (written to {out})")  # fmt: skip


def _crf_search(args: argparse.Namespace) -> None:
    import json

    from .evaluation import crf_search_table, search_crf_checkpoint
    from .inference import check_output_file, json_report_with

    out = check_output_file(
        args.out or Path(args.checkpoint).with_name("crf_search.json"),
        replaceable=json_report_with("results"),
    )
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
    out.write_text(json.dumps(found, indent=2) + "\n")
    print(f"all combinations written to {out}")


def _predict(args: argparse.Namespace) -> int:
    from .evaluation import chain
    from .inference import Predictor, find_images, plan_outputs, predict_to_files
    from .loader import load_weights

    if bool(args.checkpoint) == bool(args.weights):
        raise ConfigError("atrous predict needs --checkpoint or --weights (one of them)")
    paths = find_images(args.inputs)
    plan_outputs(paths, args.out)  # no input or foreign file replaced: checked before loading
    loaded = load_weights(args.weights) if args.weights else _load_model_file(args.checkpoint, args)
    refine = chain(list(_refiners(args, loaded.state.get("config")).values()))
    predictor = Predictor.from_loaded(
        loaded, device=args.device, refine=refine, **_predictor_options(args)
    )
    if args.save_attention and not hasattr(loaded.model, "attention_maps"):
        raise ConfigError(
            f"--save-attention: {args.checkpoint or args.weights} was not trained with "
            "model.scale_attention"
        )
    written = predict_to_files(predictor, paths, args.out, attention=args.save_attention)
    print(f"wrote {len(written)} masks and overlays to {args.out}")
    for path, note in written.notices:
        print(f"  {path}: {note}", file=sys.stderr)
    if written.failed:
        print(f"atrous predict: {len(written.failed)} image(s) not read:", file=sys.stderr)
        for path, reason in written.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> None:
    from .export import export_onnx, export_pt2, export_torchscript
    from .loader import load

    if args.int8 and (args.format == "torchscript" or args.with_argmax):
        raise ConfigError("--int8: int8 export is for --format onnx (logits) or pt2 (PT2E)")
    if args.int8 != bool(args.calibration):
        raise ConfigError("--int8 and --calibration DIR_OR_SPLIT go together")
    loaded = load(args.checkpoint, checkpoint_only=True)
    model, state = loaded.model, loaded.state
    metadata = {key: state[key] for key in ("classes", "palette", "mean", "std", "model_spec")}
    size = {"height": args.height, "width": args.width}
    inputs = None
    if args.int8:
        from .inference import Predictor
        from .inference.calibration import calibration_inputs

        inputs = calibration_inputs(
            args.calibration, Predictor.from_loaded(loaded), data=args.data,
            dataset=args.dataset, limit=args.calibration_images,
        )  # fmt: skip
    if args.int8 and args.format == "onnx":
        from .export.quantize import export_onnx_int8

        export_onnx_int8(model, args.out, inputs, metadata=metadata, exporter=args.exporter, **size)
    elif args.format == "onnx":
        export_onnx(
            model, args.out, dynamic=args.dynamic, with_argmax=args.with_argmax,
            metadata=metadata, exporter=args.exporter, **size,
        )  # fmt: skip
    elif args.format == "pt2":
        export_pt2(model, args.out, metadata=metadata, calibration=inputs, **size)
    else:
        export_torchscript(model, args.out, metadata=metadata, **size)
    print(f"wrote {args.out} ({args.format}{' int8' if args.int8 else ''})")


def _convert_tf(args: argparse.Namespace) -> None:
    from .checkpoint import save_checkpoint
    from .data.known import known_classes
    from .models.convert.tf import TF_MEAN, TF_STD, convert_tf_checkpoint

    spec, state = convert_tf_checkpoint(
        args.checkpoint,
        variant=args.variant,
        num_classes=args.num_classes,
        output_stride=args.output_stride,
        atrous_rates=args.atrous_rates,
        multi_grid=args.multi_grid,
        dpc_cell=args.dpc_cell,
    )
    info = known_classes(args.num_classes, args.classes)
    save_checkpoint(
        args.out,
        {
            "model_spec": spec.to_dict(),
            "model": state,
            "classes": list(info.classes),
            "palette": info.palette.tolist(),
            "mean": list(TF_MEAN),
            "std": list(TF_STD),
        },
    )
    print(
        f"wrote {args.out}: {spec.name}({', '.join(f'{k}={v!r}' for k, v in spec.kwargs.items())})"
    )


def _data_check(args: argparse.Namespace) -> int:
    from .data.check import check_data

    report = check_data(
        args.dataset, args.root, args.split, num_classes=args.num_classes,
        boxes=args.boxes, image_labels=args.image_labels,
    )  # fmt: skip
    print(report.format())
    return 0 if report.ok else 1


def _serve(args: argparse.Namespace) -> None:
    from .serve import serve

    sources = [s for s in (args.checkpoint, args.weights, args.file) if s]
    if len(sources) != 1:
        raise ConfigError("atrous serve takes one of --checkpoint, --weights or an exported FILE")
    print(f"serving {sources[0]} on http://{args.host}:{args.port} (Ctrl+C stops)")
    serve(sources[0], host=args.host, port=args.port)


def _demo(args: argparse.Namespace) -> None:
    from .demo import DEMOS

    if args.task not in DEMOS:
        raise ConfigError(f"--task {args.task!r} has no demo; available: {', '.join(DEMOS)}")
    demo = DEMOS[args.task]
    out = args.out or demo.out
    result = demo.run(out, steps=args.steps, seed=args.seed, device=args.device)
    print(demo.report(result, out))


def _refiners(args: argparse.Namespace, saved_config: Any = None) -> dict[str, Any]:
    """The refinements asked for, set up from the checkpoint's recipe and ``--set``."""
    from .evaluation import refiners_from_recipe

    return refiners_from_recipe(
        saved_config,
        crf=args.crf,
        domain_transform=args.domain_transform,
        overrides=args.set,
        source=str(getattr(args, "checkpoint", None) or getattr(args, "weights", None)),
    )


def _load_model_file(path: str, args: argparse.Namespace) -> Any:
    """A checkpoint or exported file (ONNX fp32/int8, TorchScript, pt2) for eval / predict,
    refusing the options an exported file cannot take."""
    from .loader import load

    try:
        loaded = load(path)
    except ImportError as err:  # an ONNX file without onnxruntime
        raise ConfigError(f"{path}: {err}") from None
    if loaded.is_exported and args.output_stride is not None:
        raise ConfigError(
            f"--output-stride: {path} is an exported file, fixed at the output stride it was "
            "exported with; re-export the checkpoint after changing it, or drop the option"
        )
    return loaded


def _predictor_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "scales": tuple(args.scales),
        "flip": args.flip,
        "output_stride": args.output_stride,
        "crop": args.crop,
        "stride": args.stride,
    }


HANDLERS = {
    "train": _train, "search": _search, "eval": _eval, "crf_search": _crf_search,
    "predict": _predict, "export": _export, "convert_tf": _convert_tf,
    "data_check": _data_check, "serve": _serve, "demo": _demo,
}  # fmt: skip
"""Each command's handler; the parser sets it as ``args.func``."""


def build_parser() -> argparse.ArgumentParser:
    """The ``atrous`` argument parser, each command bound to its handler."""
    return _build_parser(HANDLERS)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input is one line on stderr (exit 2); anything else unexpected is
    one line too, with its kind (exit 1), and ``--debug`` shows the traceback; Ctrl+C exits
    130 (training saves first and says how to go on)."""
    args = build_parser().parse_args(argv)
    if args.max_image_pixels is not None:  # Pillow's bomb guard, which the readers enforce
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = args.max_image_pixels or None
    try:
        return args.func(args) or 0
    except AtrousError as err:
        if args.debug:
            raise
        print(f"atrous {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"atrous {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # not bad input as far as atrous knows: say what, briefly
        if args.debug:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"atrous {args.command}: error: {type(err).__name__}: {first} "
            f"(atrous --debug {args.command} ... shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
