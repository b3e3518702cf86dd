"""Accuracy per budget: atrous against segmentation_models_pytorch (and a plain PyTorch loop on
the atrous network), one recipe, the same data and steps, one aligned evaluation protocol.

Run by hand (about an hour on 2 CPU cores):
    pip install segmentation-models-pytorch
    python benchmarks/quality.py [--steps 600] [--datasets demo grey_many thin few_odd]
Writes benchmarks/results/quality.json (every run; rerunning skips the runs it already holds)
and quality.md.

Recipe (the issue's, at a CPU budget): DeepLabv3+ MobileNetV2 OS16 from random init, SGD
momentum 0.9, LR 0.02 poly 0.9, weight decay 4e-5, batch 8 random crops of 128 (random scale
0.75-1.25 in steps of 0.25), no flip. The atrous rows train with ``atrous.training.train`` and
its defaults (bf16 autocast where the CPU has it, channels-last); the smp and plain rows with a
plain fp32 loop over the same transforms. Evaluation: every validation image at its own size,
padded at the bottom/right to a multiple of 16 (the mean pixel) and the logits cropped back,
for every model. Data sets: benchmarks/quality_data.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import quality_data  # noqa: E402

from atrous.config import load_config  # noqa: E402
from atrous.data import build_dataset, train_transforms  # noqa: E402
from atrous.evaluation import Confusion, Trimap, evaluate  # noqa: E402
from atrous.inference import Predictor  # noqa: E402
from atrous.loader import load  # noqa: E402
from atrous.models import deeplabv3plus  # noqa: E402
from atrous.models.align import crop_to, pad_to_exact  # noqa: E402
from atrous.training import train  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CROP, BATCH, LR, WD = 128, 8, 0.02, 4e-5
SCALES = (0.75, 1.25)

# Rows: (name, trainer, atrous --set overrides). The first four are the comparison; the rest
# are one-change ablations: of the atrous row, and (the "PyTorch-init residuals" rows, run before
# zero-initialised residual units became the default) of the atrous row as it was then.
ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "atrous": ("atrous", ()),
    "atrous fp32": ("atrous", ("train.amp=none",)),
    "smp DeepLabV3Plus": ("smp", ()),
    "plain loop, atrous network": ("plain", ()),
    # the library's default scales, with the peer on the same continuous scales
    "smp DeepLabV3Plus, continuous scales": ("smp", ("data.scale_step=0",)),
}

PYTORCH_INIT = "model.zero_init_residual=false"
"""The default before residual units started as the identity: the rows below ran against it."""

_BEFORE_ZERO_INIT: dict[str, tuple[str, tuple[str, ...]]] = {
    "atrous": ("atrous", ()),
    "atrous fp32": ("atrous", ("train.amp=none",)),
    # the same fp32 computation in NCHW: exact arithmetic is unchanged, only the rounding
    # differs, so this row against "atrous fp32" measures what rounding alone moves a run
    "atrous fp32, NCHW (rounding only)": (
        "atrous",
        ("train.amp=none", "train.channels_last=false"),
    ),
    "plain loop, atrous network": ("plain", ()),
    "atrous, He init": ("atrous", ("model.init=he",)),
    "atrous, continuous scales": ("atrous", ("data.scale_step=0",)),
    "atrous, no depthwise BN+ReLU": ("atrous", ("model.depthwise_bn=false",)),
    "atrous, TF low-level tap": ("atrous", ("model.low_level=depthwise",)),
    "atrous, ASPP dropout 0.5": ("atrous", ("model.aspp_dropout=0.5",)),
    # BN statistics averaged over 100 more training batches under the final weights; the
    # training itself is the atrous row's, step for step
    "atrous, precise BN": ("atrous", ("train.precise_bn=100",)),
    # rates that fit the 8x8 features of a 128 crop (the paper's 12 and 18 train only their
    # centre tap there, and 6 only at the borders)
    "atrous, ASPP rates 2, 4, 6": ("atrous", ("model.atrous_rates=[2, 4, 6]",)),
}
ROWS.update(
    {
        f"{name}, PyTorch-init residuals": (trainer, (PYTORCH_INIT, *extra))
        for name, (trainer, extra) in _BEFORE_ZERO_INIT.items()
    }
)


class Aligned(nn.Module):
    """Any network evaluated the atrous way: input padded to a multiple of 16, logits cropped."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return crop_to(self.model(pad_to_exact(x, 16)), h, w)


def _score(predictor: Predictor, root: Path, num_classes: int) -> dict[str, float]:
    data = build_dataset("folder", root, "val")
    found = evaluate(
        predictor,
        data,
        {"metrics": Confusion(num_classes), "trimap": Trimap(num_classes, (2,))},
        progress=False,
    )
    return {"miou": found["metrics"]["miou"], "trimap_2px": found["trimap"]["2"]}


def _train_atrous(root: Path, out: Path, steps: int, seed: int, extra: tuple[str, ...]) -> dict:
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            f"data.crop_size={CROP}",
            f"data.scale_range=[{SCALES[0]}, {SCALES[1]}]",
            "data.scale_step=0.25",
            "data.hflip=false",
            "data.num_workers=0",
            f"train.steps={steps}",
            f"train.batch_size={BATCH}",
            f"train.lr={LR}",
            f"train.weight_decay={WD}",
            f"train.checkpoint_every={steps}",
            "train.log_every=50",
            f"train.seed={seed}",
            f"train.out_dir={out}",
            "data.val_split=null",
            *extra,
        ],
    )
    start = time.perf_counter()
    result = train(cfg, progress=False)
    seconds = time.perf_counter() - start
    loaded = load(result["checkpoint"])
    scores = _score(Predictor.from_loaded(loaded), root, len(loaded.info.classes))
    return {**scores, "s_per_step": seconds / steps, "final_loss": result["losses"][-1]}


def _train_plain(
    model: nn.Module, root: Path, steps: int, seed: int, scale_step: float = 0.25
) -> dict:
    """The loop people write around a segmentation_models_pytorch model: fp32, SGD on every
    parameter with weight decay, poly LR, cross-entropy ignoring 255."""
    torch.manual_seed(seed)
    transforms = train_transforms(CROP, scale_range=SCALES, scale_step=scale_step, hflip=False)
    data = build_dataset("folder", root, "train", transforms)
    loader = DataLoader(
        data, batch_size=BATCH, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=WD)
    poly = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (1 - s / steps) ** 0.9)
    model.train()
    step, start, loss = 0, time.perf_counter(), torch.zeros(())
    while step < steps:
        for images, masks in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), masks, ignore_index=255)
            loss.backward()
            optimizer.step()
            poly.step()
            step += 1
            if step == steps:
                break
    seconds = time.perf_counter() - start
    predictor = Predictor(Aligned(model).eval())
    scores = _score(predictor, root, data.num_classes)
    return {**scores, "s_per_step": seconds / steps, "final_loss": loss.item()}


def run(row: str, dataset: str, seed: int, steps: int, work: Path) -> dict[str, Any]:
    root = quality_data.make(dataset, work / "data")
    num_classes = len(json.loads((root / "classes.json").read_text())["classes"])
    trainer, extra = ROWS[row]
    torch.manual_seed(seed)
    if trainer == "atrous":
        out = work / "runs" / f"{dataset}-{row}-{seed}".replace(" ", "_").replace(",", "")
        return _train_atrous(root, out, steps, seed, extra)
    if trainer == "smp":
        import segmentation_models_pytorch as smp

        model = smp.DeepLabV3Plus("mobilenet_v2", encoder_weights=None, classes=num_classes)
        step = float(dict(e.split("=", 1) for e in extra).get("data.scale_step", 0.25))
        return _train_plain(model, root, steps, seed, step)
    zero_init = PYTORCH_INIT not in extra
    model = deeplabv3plus(num_classes=num_classes, zero_init_residual=zero_init)
    return _train_plain(model, root, steps, seed)


def _mean(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * m:.2f} ± {100 * sd:.2f}"


def report(runs: list[dict[str, Any]], steps: int) -> str:
    datasets = [d for d in quality_data.DATASETS if any(r["dataset"] == d for r in runs)]
    lines = [
        "# Accuracy per budget (`python benchmarks/quality.py`)",
        "",
        f"DeepLabv3+ MobileNetV2 OS16 from scratch, {steps} steps of batch {BATCH} at crop "
        f"{CROP}, SGD 0.9, LR {LR} poly 0.9, wd {WD}; mIoU (%) on each data set's 60 validation "
        "images at their own sizes, padded to a multiple of 16; mean ± std over seeds, seeds in "
        "brackets; s/step on this 2-core CPU (other jobs may have shared it).",
        "",
        "| row | " + " | ".join(datasets) + " | s/step |",
        "|---|" + "---|" * (len(datasets) + 1),
    ]
    earlier = sorted({r["row"] for r in runs} - set(ROWS))  # rows of code since changed
    for row in [*ROWS, *earlier]:
        cells, speeds = [], []
        for dataset in datasets:
            found = [r for r in runs if r["row"] == row and r["dataset"] == dataset]
            found.sort(key=lambda r: r["seed"])
            if not found:
                cells.append("-")
                continue
            seeds = ",".join(str(r["seed"]) for r in found)
            cells.append(f"{_mean([r['miou'] for r in found])} [{seeds}]")
            speeds += [r["s_per_step"] for r in found]
        if any(c != "-" for c in cells):
            speed = f"{sum(speeds) / len(speeds):.3f}" if speeds else "-"
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {speed} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--datasets", nargs="+", default=list(quality_data.DATASETS))
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work", default="/tmp/atrous-quality")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "quality.json"
    runs = json.loads(log.read_text()) if log.is_file() else []
    for dataset in args.datasets:
        for row in args.rows:
            for seed in args.seeds:
                key = {"row": row, "dataset": dataset, "seed": seed, "steps": args.steps}
                if any(all(r.get(k) == v for k, v in key.items()) for r in runs):
                    continue
                result = {**key, **run(row, dataset, seed, args.steps, Path(args.work))}
                print(json.dumps(result), flush=True)
                runs.append(result)
                log.write_text(json.dumps(runs, indent=1) + "\n")
                same = [r for r in runs if r["steps"] == args.steps]
                (RESULTS / "quality.md").write_text(report(same, args.steps))


if __name__ == "__main__":
    main()
