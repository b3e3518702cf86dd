"""``atrous demo``: make the synthetic data set, train on it, evaluate, and write predictions.

Runs offline on a laptop CPU in a few minutes. The recipe equals
``configs/synthetic/deeplabv3plus_mobilenetv2_os16_96_2500.yaml`` (a test keeps them in step):
DeepLabv3+ MobileNetV2 at OS16, narrowed (width 0.5, 128-channel head, ASPP rates 1, 2, 3 for
its 96-pixel crops) to suit a CPU, trained from scratch with batch 4 (more steps of a smaller
batch learn faster in a fixed CPU budget), 2,500 steps in fp32 so that the whole demo fits in
150 s on a 2-core CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .config import Config, load_config
from .data import (
    SegmentationFolder,
    build_dataset,
    make_synthetic_dataset,
    make_synthetic_people,
)
from .demo_tasks import (
    _fresh,
    _masklab_report,
    _parts_report,
    run_masklab_demo,
    run_parts_demo,
    train_and_predict,
)
from .demo_vqa import run_vqa_demo, vqa_report
from .evaluation import (
    comparison_grid,
    panoptic_table,
    people_table,
)
from .inference import Predictor, predict_to_files
from .structured.words_demo import run_words_demo, words_report
from .training import train

DEMO_OVERRIDES = (
    "data.crop_size=96",
    "data.num_workers=0",
    "model.width_mult=0.5",
    "model.channels=128",
    # ASPP rates for the 6x6 features of a 96 crop at OS16: the paper's 6, 12, 18 (for the
    # 33x33 features of a 513 crop) reach past them and train only their centre taps; scaled
    # by 6/33 they become 1, 2, 3 (seeds 0-3: 75.38 mean vs 73.47, demo_budget.md)
    "model.atrous_rates=[1, 2, 3]",
    "train.steps=2500",
    "train.batch_size=4",
    "train.lr=0.035",
    # fp32: at this size bf16 autocast is slower on the CPU (2,000 steps: 151 s vs 114 s) and
    # no more accurate (73.79 vs 73.89 mIoU), benchmarks/results/demo_budget.md
    "train.amp=none",
    # the recipe's 0.25 steps, not the library's continuous default: continuous scales gave
    # 73.59 against 74.19 here (seed 0, benchmarks/results/demo_budget.md)
    "data.scale_step=0.25",
    "train.checkpoint_every=1000",
)


def demo_config(out: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The demo recipe, training into ``out`` on ``out/data``, then ``key=value`` overrides."""
    out = Path(out)
    paths = [f"data.root={out / 'data'}", f"train.out_dir={out}"]
    return load_config(None, [*DEMO_OVERRIDES, *paths, *overrides])


def run_demo(
    out: str | Path = "atrous-demo",
    *,
    steps: int | None = None,
    num_train: int = 300,
    num_val: int = 60,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Generate data, train, evaluate on the held-out split and write predictions to ``out``.

    ``predictions.png`` shows image | ground truth | prediction for eight held-out scenes.
    Returns ``{"metrics", "checkpoint", "predictions", "seconds"}``.
    """
    start = time.perf_counter()
    out = _fresh(out)
    overrides = [f"train.seed={seed}", f"train.device={device}"]
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    cfg = demo_config(out, overrides)
    make_synthetic_dataset(out / "data", num_train=num_train, num_val=num_val, seed=seed)
    result = train(cfg, progress=progress)
    predictor = Predictor.from_checkpoint(result["checkpoint"], device=cfg.train.device)
    val_set = SegmentationFolder(cfg.data.root, cfg.data.val_split)
    pred_dir = out / "predictions"
    paths = [image for image, _ in val_set.samples[:16]]
    predict_to_files(predictor, paths, pred_dir, progress=progress)
    rows = []
    for index in range(min(8, len(val_set))):
        image, truth = val_set[index]
        rows.append(
            (image.permute(1, 2, 0).numpy(), truth.numpy(), predictor.predict(image).numpy())
        )
    Image.fromarray(comparison_grid(rows, val_set.palette)).save(out / "predictions.png")
    return {
        "metrics": result["metrics"],
        "checkpoint": result["checkpoint"],
        "predictions": pred_dir,
        "seconds": time.perf_counter() - start,
    }


PANOPTIC_OVERRIDES = (
    "task=panoptic",
    "data.dataset=panoptic_folder",
    "data.crop_size=96",
    "data.num_workers=0",
    "model.name=panoptic_deeplab",
    "model.backbone=mobilenetv2",
    "model.width_mult=0.5",
    "train.optimizer=adam",  # as Panoptic-DeepLab trains
    "train.lr=0.001",
    "train.steps=2000",
    "train.batch_size=4",
    "train.checkpoint_every=1000",
    # Demo-scale settings (the library keeps the paper's, for Cityscapes-size images; seed 0,
    # benchmarks/results/panoptic_demo.md). Every shape of these 96-160 px scenes is under the
    # paper's 64x64 "small instance", so all thing pixels weighed x3 and background was
    # over-run by things (background accuracy 83%, 90% now); 4096 scaled by the scenes' area
    # to Cityscapes' (1/128) is 32: mIoU 59.35 -> 63.34, stuff PQ 78.1 -> 86.2.
    "panoptic.small_area=32",
    # The centre heatmap learnt at this budget is rippled: NMS 7 / 0.1 kept 1,057-1,237 centres
    # for 219 shapes, and with the offsets still short and noisy each shape split into several
    # instances. A 25-pixel NMS window and threshold 0.3: things PQ 5.0 -> 16.7.
    "panoptic.threshold=0.3",
    "panoptic.nms_kernel=25",
)


def run_panoptic_demo(
    out: str | Path = "atrous-demo-panoptic",
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """The panoptic demo: the demo scenes with every shape a thing instance (background is
    stuff), Panoptic-DeepLab (MobileNetV2, width 0.5) trained from scratch, PQ / SQ / RQ, Parsing
    Covering and mIoU on the held-out scenes, and panoptic PNGs with outlined overlays."""
    start = time.perf_counter()
    out = _fresh(out)
    overrides = [f"data.root={out / 'data'}", f"train.out_dir={out}", f"train.seed={seed}",
                 f"train.device={device}"]  # fmt: skip
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    cfg = load_config(None, [*PANOPTIC_OVERRIDES, *overrides])
    make_synthetic_dataset(out / "data", seed=seed, panoptic=True)
    result = train(cfg, progress=progress)
    predictor = Predictor.from_checkpoint(result["checkpoint"], device=cfg.train.device)
    val_set = build_dataset("panoptic_folder", cfg.data.root, cfg.data.val_split)
    paths = [image for image, _ in val_set.samples[:8]]
    predict_to_files(predictor, paths, out / "predictions", progress=progress)
    # the panoptic pictures again with the recipe's post-processing, as metrics.json scored
    # them (predict_to_files decodes with the library's defaults)
    from .inference.writer import save_panoptic
    from .tasks.panoptic import POSTPROCESS_KEYS
    from .tasks.panoptic_decode import predict_panoptic

    options = {key: getattr(cfg.panoptic, key) for key in POSTPROCESS_KEYS}
    for index, path in enumerate(paths):
        image = val_set[index][0]
        x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
        pan = predict_panoptic(predictor.model, x, **options)[0].cpu().numpy()
        save_panoptic(pan, image.permute(1, 2, 0).numpy(), out / "predictions", path.stem,
                      predictor.info, predictor.model.label_divisor)  # fmt: skip
    return {
        "metrics": result["metrics"],
        "checkpoint": result["checkpoint"],
        "predictions": out / "predictions",
        "seconds": time.perf_counter() - start,
    }


PERSONLAB_OVERRIDES = (
    "task=personlab",
    "data.dataset=coco_keypoints",
    "data.crop_size=128",
    "data.num_workers=0",
    "data.scale_range=[0.75, 1.25]",
    # the synthetic people colour left limbs apart from right ones; a flip would swap the
    # labels but not the colours
    "data.hflip=false",
    "model.name=personlab",
    "model.backbone=mobilenetv2",
    "model.width_mult=0.5",
    "model.channels=128",
    "model.atrous_rates=[1, 2, 3]",  # the 8x8 features of a 128 crop at OS16
    # R = 32 at the paper's 801 crops, scaled to people 35-110 pixels tall
    "model.radius=10.0",
    # the offsets refined on the OS4 maps: 3x less time a step than at the input size
    "model.refine_stride=4",
    "train.optimizer=adam",
    "train.lr=0.001",
    "train.amp=none",
    # 1,000 steps: about 5 minutes here; 1,500 double both APs (benchmarks/results/personlab.md)
    "train.steps=1000",
    "train.batch_size=4",
    "train.checkpoint_every=500",
)


def run_personlab_demo(
    out: str | Path = "atrous-demo-personlab",
    *,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The PersonLab demo: synthetic stick-figure people (several per image, touching,
    occluded, some keypoints unlabelled), PersonLab (MobileNetV2, width 0.5) trained from
    scratch, COCO keypoint AP and person mask AP on the held-out images through pycocotools,
    and ``atrous predict``'s pictures (skeletons, instance masks) of eight of them.
    ``overrides`` (``key=value``) change the recipe (benchmarks/personlab_demo.py)."""
    start = time.perf_counter()
    out = _fresh(out)
    root = make_synthetic_people(out / "data", seed=seed)
    return train_and_predict(
        out,
        root,
        "coco_keypoints",
        PERSONLAB_OVERRIDES,
        overrides,
        start=start,
        steps=steps,
        seed=seed,
        device=device,
        progress=progress,
    )


def _semantic_report(result: dict[str, Any], out: str | Path) -> str:
    return (
        f"demo: mIoU {100 * result['metrics']['miou']:.2f} on the held-out split in "
        f"{result['seconds']:.0f} s; checkpoint, metrics.json and predictions/ in {out}"
    )


def _panoptic_report(result: dict[str, Any], out: str | Path) -> str:
    metrics = result["metrics"]
    return (
        f"{panoptic_table(metrics['panoptic'])}\n"
        f"panoptic demo: PQ {100 * metrics['panoptic']['pq']:.2f}, PC "
        f"{100 * metrics['panoptic']['pc']:.2f}, mIoU {100 * metrics['miou']:.2f} on the "
        f"held-out split in {result['seconds']:.0f} s; checkpoint and predictions/ in {out}"
    )


def _personlab_report(result: dict[str, Any], out: str | Path) -> str:
    metrics = result["metrics"]
    return (
        f"{people_table(metrics)}\n"
        f"personlab demo: keypoint AP {100 * metrics['keypoint_ap']:.2f}, mask AP "
        f"{100 * metrics['mask_ap']:.2f} (person mIoU {100 * metrics['miou']:.2f}) on the "
        f"held-out split in {result['seconds']:.0f} s; checkpoint and predictions/ in {out}"
    )


@dataclass(frozen=True)
class Demo:
    """A task's demo: ``run(out, steps=, seed=, device=)`` trains and scores it, ``report``
    says what it found, ``out`` is its default folder."""

    run: Callable[..., dict[str, Any]]
    report: Callable[[dict[str, Any], str | Path], str]
    out: str


DEMOS: dict[str, Demo] = {
    "semantic": Demo(run_demo, _semantic_report, "atrous-demo"),
    "panoptic": Demo(run_panoptic_demo, _panoptic_report, "atrous-demo-panoptic"),
    "personlab": Demo(run_personlab_demo, _personlab_report, "atrous-demo-personlab"),
    "masklab": Demo(run_masklab_demo, _masklab_report, "atrous-demo-masklab"),
    "parts": Demo(run_parts_demo, _parts_report, "atrous-demo-parts"),
    "words": Demo(run_words_demo, words_report, "atrous-demo-words"),
    "vqa": Demo(run_vqa_demo, vqa_report, "atrous-demo-vqa"),
}
"""``atrous demo --task NAME``: each task's demo (a new task adds its own here)."""
