"""The demos of the instance and part tasks (``atrous demo --task masklab``, ``--task parts``):
synthetic scenes, a small model trained from scratch, the task's numbers on the held-out scenes
and pictures of eight of them; :mod:`.demo` registers them beside the others."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import load_config
from .data import build_dataset, make_synthetic_instances, make_synthetic_parts
from .errors import ConfigError
from .evaluation import instances_table, size_table
from .inference import Predictor, predict_to_files
from .training import train


def _fresh(out: str | Path) -> Path:
    """The demo's folder, refused up front when an earlier demo (or any run) trained there: a
    run never replaces another run's checkpoint."""
    out = Path(out)
    if (out / "checkpoint.pt").exists():
        raise ConfigError(
            f"{out}: holds an earlier run (checkpoint.pt); remove the folder or give "
            "atrous demo --out another one"
        )
    return out


def train_and_predict(
    out: Path,
    root: Path,
    dataset: str,
    recipe: Sequence[str],
    overrides: Sequence[str],
    *,
    start: float,
    steps: int | None,
    seed: int,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """What every task's demo does once its data is written: train ``recipe`` (``key=value``
    overrides of the defaults) on ``root`` into ``out``, then ``overrides``, and write
    ``atrous predict``'s outputs for eight held-out images of ``dataset``. ``seconds`` count
    from ``start``."""
    run = [f"data.root={root}", f"train.out_dir={out}", f"train.seed={seed}",
           f"train.device={device}"]  # fmt: skip
    if steps is not None:
        run.append(f"train.steps={steps}")
    cfg = load_config(None, [*recipe, *run, *overrides])
    result = train(cfg, progress=progress)
    predictor = Predictor.from_checkpoint(result["checkpoint"], device=cfg.train.device)
    val_set = build_dataset(dataset, root, cfg.data.val_split)
    paths = [image for image, _ in val_set.samples[:8]]
    predict_to_files(predictor, paths, out / "predictions", progress=progress)
    return {
        "metrics": result["metrics"],
        "checkpoint": result["checkpoint"],
        "predictions": out / "predictions",
        "seconds": time.perf_counter() - start,
    }


MASKLAB_OVERRIDES = (
    "task=masklab",
    "data.dataset=coco_instances",
    "data.crop_size=128",
    "data.num_workers=0",
    "data.scale_range=[0.75, 1.25]",
    "model.name=masklab",
    "model.backbone=mobilenetv2",
    "model.width_mult=0.5",
    "model.channels=128",
    # OS8 (the paper's, recalled): at OS16 the 8x8 maps of a 128 crop are coarser than the
    # direction bins' rings on objects 14-50 pixels wide; ASPP rates for its 16x16 features
    "model.output_stride=8",
    "model.atrous_rates=[2, 4, 6]",
    # demo scale (the library keeps COCO's): objects 14-50 pixels, 21 x 21 mask crops (the
    # paper's 41 costs 3x the step here), 64 boxes per image for the box head, at most 20
    # detections per image for scenes of 2 to 6 objects
    "model.anchor_sizes=[16, 32, 64]",
    "model.mask_size=21",
    "model.mask_rois=16",
    "model.box_batch_size=64",
    "model.detections_per_image=20",
    "train.optimizer=adam",
    "train.lr=0.001",
    "train.amp=none",
    "train.steps=500",
    "train.batch_size=4",
    "train.checkpoint_every=250",
)


def run_masklab_demo(
    out: str | Path = "atrous-demo-masklab",
    *,
    steps: int | None = None,
    num_train: int = 300,
    num_val: int = 60,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The MaskLab demo: synthetic scenes of disks, boxes and triangles, half of them touching
    another of their class, MaskLab (MobileNetV2, width 0.5) trained from scratch, COCO mask
    and box AP on the held-out scenes through pycocotools, and ``atrous predict``'s pictures
    (each instance in its own colour with its box and label) of eight of them. ``overrides``
    (``key=value``) change the recipe (benchmarks/masklab_ablation.py)."""
    start = time.perf_counter()
    out = _fresh(out)
    root = make_synthetic_instances(out / "data", num_train=num_train, num_val=num_val, seed=seed)
    return train_and_predict(
        out,
        root,
        "coco_instances",
        MASKLAB_OVERRIDES,
        overrides,
        start=start,
        steps=steps,
        seed=seed,
        device=device,
        progress=progress,
    )


PARTS_OVERRIDES = (
    "task=parts",
    "data.dataset=person_part",
    "data.crop_size=128",  # the whole 128 x 128 scene: every object in one crop
    "data.num_workers=0",
    "data.scale_range=[0.75, 1.25]",
    "model.name=hazn",
    # demo scale: MobileNetV2 width 0.5 and a 128-channel ASPP and scale heads (the paper's
    # VGG-16 LargeFOV is 20x the MAdds); trained from scratch (no download)
    "model.backbone=mobilenetv2",
    "model.width_mult=0.5",
    "model.channels=128",
    # OS8 (LargeFOV's): at OS16 the 8 x 8 maps of a 128 crop are coarser than the smallest
    # figures (12 px tall) and their parts; the scale heads predict a box per OS8 pixel; ASPP
    # rates 2, 4, 6 for the 16 x 16 features (the library's 12, 24, 36 reach past them)
    "model.output_stride=8",
    "model.atrous_rates=[2, 4, 6]",
    # a region's longer side is zoomed to 96 px: about 3/4 of these 128-px scenes, as the
    # library's 256 is of the paper's 321 crops; the zoom bounds (0.5, 2.5), the context margin
    # and the NMS settings stay the library's (hazn.py, auto_zoom.py)
    "model.target_size=96.0",
    # the scale heads read the backbone's features detached (the paper shares them): trained
    # from scratch here, the scale losses through the shared backbone kept it from learning
    # the parts (seed 0, held-out part mIoU: 14.0 after 400 steps against 18.2 with the scale
    # losses off; 13.4 after 1,000 steps against 30.8 for the detached FCN)
    "model.detach_features=true",
    "train.optimizer=adam",  # from scratch, as the other small demos
    "train.lr=0.001",
    "train.amp=none",  # fp32: bf16 autocast was slower on the CPU at this size (demo_budget.md)
    # 1,000 steps: the whole demo took 211 s at one thread (seed 0, part mIoU 33.49;
    # benchmarks/results/hazn.md)
    "train.steps=1000",
    "train.batch_size=4",
    "train.checkpoint_every=500",
)


def run_parts_demo(
    out: str | Path = "atrous-demo-parts",
    *,
    steps: int | None = None,
    num_train: int = 300,
    num_val: int = 60,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """The HAZN demo: synthetic scenes of stick figures made of the six Person-Part parts at
    widely different scales (12 to 110 px tall on 128-px images, several per image, some
    touching), HAZN (MobileNetV2, width 0.5, OS8; both zooms on) trained from scratch, part
    mIoU overall and by object size (``metrics.json``: ``miou``, ``miou_by_size``, fractions)
    on the held-out scenes, and ``atrous predict``'s pictures of eight of them. ``overrides``
    (``key=value``) change the recipe (benchmarks/hazn_ablation.py)."""
    start = time.perf_counter()
    out = _fresh(out)
    root = make_synthetic_parts(out / "data", num_train=num_train, num_val=num_val, seed=seed)
    return train_and_predict(
        out,
        root,
        "person_part",
        PARTS_OVERRIDES,
        overrides,
        start=start,
        steps=steps,
        seed=seed,
        device=device,
        progress=progress,
    )


def _masklab_report(result: dict[str, Any], out: str | Path) -> str:
    metrics = result["metrics"]
    return (
        f"{instances_table(metrics)}\n"
        f"masklab demo: mask AP {100 * metrics['mask_ap']:.2f}, box AP "
        f"{100 * metrics['box_ap']:.2f} (mIoU {100 * metrics['miou']:.2f}) on the held-out "
        f"split in {result['seconds']:.0f} s; checkpoint and predictions/ in {out}"
    )


def _parts_report(result: dict[str, Any], out: str | Path) -> str:
    metrics = result["metrics"]
    return (
        f"{size_table(metrics)}\n"
        f"parts demo: part mIoU {100 * metrics['miou']:.2f} on the held-out split in "
        f"{result['seconds']:.0f} s; checkpoint, metrics.json and predictions/ in {out}"
    )
