"""Deployment runtimes on this CPU: speed at 513x513 and the mIoU each costs (issue #35).

Run by hand (speed needs a quiet machine: nothing else busy on the cores):
    python benchmarks/deploy.py speed [--repeats 15] [--size 513] [--threads 2]
    python benchmarks/deploy.py accuracy [--demo benchmarks/runs/deploy-demo]
Writes benchmarks/results/deploy.json (each part under its own key) and deploy.md.

speed: forward time of a normalized 1x3xSxS batch, median of interleaved runs (each round runs
every runtime once), for DeepLabv3 ResNet-50 OS8 and DeepLabv3+ MobileNetV2 OS16 (random
weights: speed does not depend on them) as fp32 eager, the bf16 fast path (BN folded,
channels-last, bf16 autocast), ONNX Runtime fp32 and int8 (static QDQ, calibrated on 8 random
images) and PT2E int8 (torchao X86InductorQuantizer, run through torch.compile), against
torchvision's eager deeplabv3_resnet50; speed-up = torchvision time / time. Refuses to time
while the 1-minute load average is over a quarter of the cores (--force overrides).

accuracy: the demo's checkpoint (``atrous demo``, trained into --demo unless there already)
and each of its deployed forms scored by ``evaluate_checkpoint`` on the demo's held-out split
and on a second synthetic set (other scenes, larger images);
the int8 files are calibrated on 64 images of its train split, read as the predictor reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from atrous import Predictor
from atrous.data import make_synthetic_dataset
from atrous.export import export_onnx, export_pt2, load_onnx, load_pt2
from atrous.export.quantize import export_onnx_int8, quantize_pt2e
from atrous.models import build_model

RESULTS = Path(__file__).parent / "results"
MODELS = {
    "deeplabv3 resnet50 OS8": ("deeplabv3", {"backbone": "resnet50", "output_stride": 8}),
    "deeplabv3plus mobilenetv2 OS16": (
        "deeplabv3plus",
        {"backbone": "mobilenetv2", "output_stride": 16},
    ),
}
RUNTIMES = ("fp32 eager", "bf16 fast path", "ORT fp32", "ORT int8", "PT2E int8")


def _ort_runner(path: Path, threads: int) -> Callable[[torch.Tensor], Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x.numpy()})[0]


def _runners(model: nn.Module, x: torch.Tensor, work: Path, threads: int) -> dict[str, Callable]:
    """Every runtime of ``model`` as a callable on the normalized batch ``x``."""
    calibration = [torch.randn(3, *x.shape[-2:]) for _ in range(8)]
    size = {"height": x.shape[-2], "width": x.shape[-1]}
    plain = Predictor(model)._forward
    fast = Predictor(model, fast=True)._forward
    runners = {"fp32 eager": plain, "bf16 fast path": fast}
    try:
        fp32 = export_onnx(model, work / "fp32.onnx", dynamic=True, **size)
        runners["ORT fp32"] = _ort_runner(fp32, threads)
        int8 = export_onnx_int8(model, work / "int8.onnx", calibration, **size)
        runners["ORT int8"] = _ort_runner(int8, threads)
    except ImportError as err:
        print(f"  no ONNX rows: {err}")
    try:
        program, _ = quantize_pt2e(model, calibration, **size)
        runners["PT2E int8"] = torch.compile(program.module())
    except ImportError as err:
        print(f"  no PT2E row: {err}")
    except ValueError as err:  # torchao's quantizer fails on some graphs: say so, time the rest
        print(f"  no PT2E row: quantize_pt2e failed: {err}")
        FAILED.append({"runtime": "PT2E int8", "error": f"{type(err).__name__}: {err}"})
    return runners


FAILED: list[dict[str, str]] = []
"""Runtimes that could not be built for a model (and why), reported with the rows."""


def _time(run: Callable, x: torch.Tensor) -> float:
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def _quiet(force: bool) -> None:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores / 4 and not force:
        raise SystemExit(
            f"load average {load:.2f} on {cores} cores: other work is running, timings would "
            "be noise. Run again on a quiet machine (or --force)."
        )


@torch.inference_mode()
def speed(args: argparse.Namespace) -> dict[str, Any]:
    _quiet(args.force)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    tv = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=False
    ).eval()
    rows = []
    for name, (builder, kwargs) in MODELS.items():
        if args.only not in name:
            continue
        model = build_model(builder, num_classes=21, **kwargs).eval()
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            runners = {"torchvision eager": lambda x, tv=tv: tv(x)["out"]}
            runners.update(_runners(model, x, Path(tmp), args.threads))
            for run in runners.values():  # warm-up (and torch.compile's first call)
                run(x)
                run(x)
            times: dict[str, list[float]] = {key: [] for key in runners}
            for _ in range(args.repeats):  # interleaved
                for key, run in runners.items():
                    times[key].append(_time(run, x))
        for failure in FAILED:
            rows.append({"model": name, **failure})
            print(rows[-1], flush=True)
        FAILED.clear()
        base = statistics.median(times["torchvision eager"])
        for key, values in times.items():
            median = statistics.median(values)
            rows.append({"model": name, "runtime": key, "seconds": round(median, 4),
                         "speedup_vs_torchvision": round(base / median, 2)})  # fmt: skip
            print(rows[-1], flush=True)
    return {"rows": rows, "meta": _meta(args, f"1x3x{args.size}x{args.size}")}


def _demo_checkpoint(demo: Path) -> Path:
    checkpoint = demo / "checkpoint.pt"
    if not (demo / "predictions.png").is_file():  # written last: the demo finished
        from atrous.demo import run_demo

        run_demo(demo, progress=False, device="cpu")
    return checkpoint


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    from atrous.evaluation import evaluate_checkpoint
    from atrous.inference.calibration import calibration_inputs
    from atrous.loader import load

    torch.set_num_threads(args.threads)
    demo = Path(args.demo)
    checkpoint = _demo_checkpoint(demo)
    data = demo / "data"
    loaded = load(checkpoint)
    meta = {k: loaded.state[k] for k in ("classes", "palette", "mean", "std", "model_spec")}
    predictor = Predictor.from_loaded(loaded)

    def calibration() -> Any:
        return calibration_inputs("train", predictor, data=data, limit=64)

    # the second set: other scenes (seed 1) at larger sizes than the demo trained on (160-256 px)
    second = demo / "second_data"
    if not (second / "splits").is_dir():
        make_synthetic_dataset(second, num_train=0, num_val=60, size_range=(160, 256), seed=1)

    def score(what: Any, **options: Any) -> tuple[float, float]:
        found = [
            evaluate_checkpoint(what, root, split="val", device="cpu", progress=False, **options)
            for root in (data, second)
        ]
        return found[0][0]["miou"], found[1][0]["miou"]

    rows = {"fp32 eager": score(loaded), "bf16 fast path": score(loaded, fast=True)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            rows["ORT fp32"] = score(export_onnx(loaded.model, work / "a.onnx", dynamic=True,
                                                 height=96, width=96, metadata=meta))  # fmt: skip
            path = export_onnx_int8(
                loaded.model, work / "b.onnx", calibration(), metadata=meta, height=96, width=96
            )
            rows["ORT int8"] = score(path)
            assert load_onnx(path)[1]["int8"]["calibration_images"] > 0
        except ImportError as err:
            print(f"no ONNX rows: {err}")
        try:
            path = export_pt2(loaded.model, work / "c.pt2", metadata=meta, height=96, width=96,
                              calibration=calibration())  # fmt: skip
            assert "int8" in load_pt2(path)[1]
            rows["PT2E int8"] = score(path)
        except ImportError as err:
            print(f"no PT2E row: {err}")
    spec = loaded.spec.name if loaded.spec else "?"
    base = rows["fp32 eager"]
    out = [{"runtime": k, "miou": round(100 * v[0], 2), "cost": round(100 * (base[0] - v[0]), 2),
            "miou_second": round(100 * v[1], 2), "cost_second": round(100 * (base[1] - v[1]), 2)}
           for k, v in rows.items()]  # fmt: skip
    for row in out:
        print(row, flush=True)
    return {"rows": out, "meta": {**_meta(args, "demo held-out split"), "model": spec}}


def _meta(args: argparse.Namespace, data: str) -> dict[str, Any]:
    return {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": args.threads,
        "input": data,
        "repeats": getattr(args, "repeats", None),
        "date": time.strftime("%Y-%m-%d"),
    }


def render(results: dict[str, Any]) -> str:
    lines = ["# Deployment runtimes", ""]
    if "speed" in results:
        meta = results["speed"]["meta"]
        lines += [
            f"Forward time, batch 1, {meta['input']}, CPU ({meta['machine']}), "
            f"{meta['threads']} threads, torch {meta['torch']}, median of {meta['repeats']} "
            "interleaved runs; speed-up against torchvision's eager deeplabv3_resnet50.",
            "",
            "| model | runtime | seconds | speed-up vs torchvision |",
            "|---|---|---|---|",
        ]
        for row in results["speed"]["rows"]:
            if "error" in row:
                lines.append(f"| {row['model']} | {row['runtime']} | failed: {row['error']} | |")
                continue
            lines.append(f"| {row['model']} | {row['runtime']} | {row['seconds']} | "
                         f"{row['speedup_vs_torchvision']}x |")  # fmt: skip
        lines.append("")
    else:
        lines += [
            "Speed: to be measured on a quiet machine: `python benchmarks/deploy.py speed`",
            "",
        ]
    if "accuracy" in results:
        meta = results["accuracy"]["meta"]
        lines += [
            f"mIoU on the demo's held-out split ({meta['model']}, the `atrous demo` checkpoint), "
            f"torch {meta['torch']}; cost = fp32 eager mIoU minus this runtime's (points). "
            "int8 calibrated on 64 train-split images; PT2E scored through its reference "
            "(quantize/dequantize) graph in eager mode.",
            "",
            "Second set: 60 other synthetic scenes (seed 1) at 160-256 px, larger than the "
            "demo's 96-160 px, same checkpoint.",
            "",
            "| runtime | mIoU demo | cost demo | mIoU second set | cost second set |",
            "|---|---|---|---|---|",
        ]
        for row in results["accuracy"]["rows"]:
            cells = [row.get(k, "") for k in ("miou", "cost", "miou_second", "cost_second")]
            lines.append(f"| {row['runtime']} | " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("part", choices=("speed", "accuracy"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="", help="speed: only models whose name has this")
    parser.add_argument("--demo", default=str(Path(__file__).parent / "runs" / "deploy-demo"))
    parser.add_argument("--force", action="store_true", help="time even on a busy machine")
    parser.add_argument("--out", default="deploy", help="results file stem in results/")
    args = parser.parse_args()
    path = RESULTS / f"{args.out}.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.part] = speed(args) if args.part == "speed" else accuracy(args)
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(render(results))
    print(f"wrote {path} and {args.out}.md")


if __name__ == "__main__":
    main()
