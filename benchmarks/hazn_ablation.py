"""HAZN's ablation (Xia et al., ECCV 2016) on the parts demo's 60 held-out synthetic scenes: part
mIoU overall and by object size (XS..XL) for the FCN at one scale, attention to scale, HAZN with
the object zoom only, with the object and the part zoom, and both again with the ground-truth
object / part boxes as the regions (the zoom's ceiling: no scale-estimation errors).

One trained HAZN gives five rows: ``zoom_objects`` / ``zoom_parts`` switch after training, and
:meth:`~atrous.models.HAZN.forward_regions` zooms given regions, so the FCN, the object zoom,
object + part zoom and the two ground-truth rows are all the same weights scored five ways. The
FCN row is therefore HAZN with both zooms off (chosen over a separately trained DeepLab: the
rows then differ by the zoom alone; the FCN was trained with the scale heads beside it, which
the paper's baseline was not; ``--training fcn`` trains that plain DeepLab too, as a check).
Attention to scale is its own training. Every training is the demo's recipe and budget
(``atrous.demo_tasks.PARTS_OVERRIDES``: MobileNetV2 width 0.5 at OS8, 1,000 steps of batch 4, Adam;
the attention and plain rows on the same FCN, ``deeplabv3``, without the zoom options) on the
demo's data (seed 0: the same scenes for every row and seed), the training seed per row.

Run by hand (train time as the demo's per training, attention's steps about 3x dearer):
    python benchmarks/hazn_ablation.py --training hazn --seed 0        # five rows
    python benchmarks/hazn_ablation.py --training attention --seed 0   # one row
    python benchmarks/hazn_ablation.py --training fcn --seed 0         # optional plain DeepLab
    python benchmarks/hazn_ablation.py --pictures                      # after the seed-0 HAZN
Each row appends one line to benchmarks/results/hazn_ablation.jsonl; each training keeps its
checkpoint under benchmarks/runs/hazn/ (not committed) for the pictures;
``--pictures`` writes benchmarks/results/hazn_zoom.png.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image, ImageDraw

from atrous.config import load_config
from atrous.data import build_dataset, make_synthetic_parts
from atrous.demo_tasks import PARTS_OVERRIDES
from atrous.inference import Predictor
from atrous.models.auto_zoom import _resize, _window, zoom_factor
from atrous.models.hazn import target_regions
from atrous.tasks.parts import PartsEvaluator
from atrous.training import train

HERE = Path(__file__).parent
RESULTS = HERE / "results"
RUNS = HERE / "runs" / "hazn"
DATA_SEED = 0
"""The demo's scenes (``atrous demo --task parts`` at its default seed), for every row."""
HAZN_ONLY = ("model.target_size", "model.detach_features")
"""Demo overrides only HAZN's builder takes, left out of the other trainings."""
SCALES = "{scales: [1.0, 0.75, 0.5], merge: attention}"
"""Attention to scale as the paper (scales 1, 0.75, 0.5; extra supervision, aux_weight 1)."""
TRAININGS: dict[str, list[str]] = {
    "hazn": [],
    "attention": ["model.name=deeplabv3", f"model.scale_attention={SCALES}"],
    "fcn": ["model.name=deeplabv3"],
}
"""Training name -> overrides of the demo recipe."""
ROWS: dict[str, tuple[str, ...]] = {
    "hazn": ("fcn", "object_zoom", "object_part_zoom", "gt_object_zoom", "gt_object_part_zoom"),
    "attention": ("attention",),
    "fcn": ("fcn_plain",),
}
"""Training name -> the rows scored from it."""
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_data(runs: Path = RUNS, *, num_train: int = 300, num_val: int = 60) -> Path:
    """The demo's scenes under ``runs/data`` (written once, reused by every training)."""
    root = runs / "data"
    if not (root / "JPEGImages").is_dir():
        make_synthetic_parts(root, num_train=num_train, num_val=num_val, seed=DATA_SEED)
    return root


def recipe(training: str, seed: int, out: Path, data: Path, extra: Sequence[str] = ()):
    """The demo recipe with ``training``'s overrides, training into ``out`` on ``data``."""
    base = list(PARTS_OVERRIDES)
    if training != "hazn":
        base = [o for o in base if o.split("=", 1)[0] not in HAZN_ONLY]
    run = [f"data.root={data}", f"train.out_dir={out}", f"train.seed={seed}", "train.device=cpu"]
    return load_config(None, [*base, *TRAININGS[training], *run, *extra])


def _logits(out) -> torch.Tensor:
    return out["semantic"] if isinstance(out, dict) else out


def scorers(model: torch.nn.Module, training: str) -> dict[str, Scorer]:
    """Row name -> ``(x [1,3,H,W] normalized, target [3,H,W]) -> logits [1,K,H,W]``."""
    if training != "hazn":
        return {ROWS[training][0]: lambda x, target: _logits(model(x))}

    def zooms(objects: bool, parts: bool) -> Scorer:
        def score(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            model.zoom_objects, model.zoom_parts = objects, parts
            return model(x)["semantic"]

        return score

    def truth(parts: bool) -> Scorer:
        def score(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            objects, part_boxes = target_regions(target)
            return model.forward_regions(x, [objects], [part_boxes] if parts else None)["semantic"]

        return score

    return {
        "fcn": zooms(False, False),
        "object_zoom": zooms(True, False),
        "object_part_zoom": zooms(True, True),
        "gt_object_zoom": truth(False),
        "gt_object_part_zoom": truth(True),
    }


def score_rows(predictor: Predictor, val_set, training: str) -> dict[str, dict]:
    """Each of ``training``'s rows: :class:`PartsEvaluator`'s numbers on ``val_set`` (fp32,
    whole images) and the seconds per image."""
    model = predictor.model.eval()
    results = {}
    for row, score in scorers(model, training).items():
        evaluator = PartsEvaluator(model.num_classes)
        start = time.perf_counter()
        for index in range(len(val_set)):
            image, target = val_set[index]
            target = target.as_subclass(torch.Tensor)
            x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
            with torch.inference_mode():
                labels = score(x, target).argmax(1)[0].cpu()
            evaluator.update(SimpleNamespace(labels=labels, mask=target[0], target=target))
        metrics = evaluator.compute()
        metrics.pop("confusion_matrix", None)
        metrics["s_per_image"] = (time.perf_counter() - start) / max(1, len(val_set))
        results[row] = metrics
    if training == "hazn":
        model.zoom_objects = model.zoom_parts = True
    return results


def _finite(value):
    """NaN (a bucket without objects) as None, for JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run_training(
    training: str,
    seed: int,
    *,
    runs: Path = RUNS,
    num_train: int = 300,
    num_val: int = 60,
    extra: Sequence[str] = (),
) -> list[dict]:
    """Train ``training`` (seed ``seed``) on the demo's scenes and return its rows."""
    data = make_data(runs, num_train=num_train, num_val=num_val)
    out = runs / f"{training}_seed{seed}"
    if out.exists():
        shutil.rmtree(out)
    cfg = recipe(training, seed, out, data, extra)
    start = time.perf_counter()
    result = train(cfg, progress=False)
    seconds = time.perf_counter() - start
    predictor = Predictor.from_checkpoint(result["checkpoint"], device="cpu")
    val_set = build_dataset("person_part", data, cfg.data.val_split)
    rows = []
    for row, m in score_rows(predictor, val_set, training).items():
        rows.append(_finite({
            "row": row, "training": training, "seed": seed, "data_seed": DATA_SEED,
            "steps": cfg.train.steps, "batch_size": cfg.train.batch_size,
            "overrides": TRAININGS[training] + list(extra),
            "miou": m["miou"], "miou_by_size": m["miou_by_size"],
            "objects_by_size": m["objects_by_size"], "iou": m["iou"],
            "iou_by_size": m["iou_by_size"], "train_miou": result["metrics"]["miou"],
            "train_seconds": round(seconds, 1), "eval_s_per_image": round(m["s_per_image"], 4),
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
        }))  # fmt: skip
    return rows


def append_rows(rows: list[dict], path: Path = RESULTS / "hazn_ablation.jsonl") -> None:
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _colour(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return palette[np.where(labels == 255, 0, labels)].astype(np.uint8)


def _boxes(array: np.ndarray, objects, parts, scale: int) -> np.ndarray:
    """``array`` enlarged ``scale`` times with the object regions (white) and part regions
    (yellow) drawn."""
    picture = Image.fromarray(array).resize(
        (array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST
    )
    draw = ImageDraw.Draw(picture)
    for regions, colour in ((parts, (255, 230, 0)), (objects, (255, 255, 255))):
        for box in regions.tolist():
            draw.rectangle([v * scale for v in box], outline=colour, width=1)
    return np.asarray(picture)


def _zoomed(image: torch.Tensor, regions: torch.Tensor, model, side: int) -> np.ndarray:
    """The first region's window as the FCN sees it once zoomed (context included, resampled
    as :func:`~atrous.models.auto_zoom.zoom_regions` does), on a black ``side`` square."""
    cell = np.zeros((side, side, 3), dtype=np.uint8)
    if not len(regions):
        return cell
    zoom = model.zoom
    height, width = image.shape[-2:]
    bounds = {k: zoom[k] for k in ("target_size", "min_zoom", "max_zoom")}
    factor = float(zoom_factor(regions[:1], **bounds)[0])
    x1, y1, x2, y2 = _window(regions[0], zoom["context"], height, width)
    size = (max(1, round(factor * (y2 - y1))), max(1, round(factor * (x2 - x1))))
    crop = _resize(image[None].float(), [float(x1), float(y1), float(x2), float(y2)], size)
    crop = crop[0].clamp(0, 255).byte().permute(1, 2, 0).numpy()[:side, :side]
    cell[: crop.shape[0], : crop.shape[1]] = crop
    return cell


def pictures(
    seed: int = 0, count: int = 4, *, runs: Path = RUNS, path: Path = RESULTS / "hazn_zoom.png"
) -> Path:
    """For the ``count`` held-out scenes with the smallest objects: image with the proposed
    object (white) and part (yellow) regions | ground truth with its object and part boxes |
    parts before the zoom (the FCN) | after the object zoom | after object + part zoom, each
    enlarged 2x | the first object region as the FCN sees it once zoomed, from the seed's HAZN."""
    data = make_data(runs)
    val_set = build_dataset("person_part", data, "val")
    predictor = Predictor.from_checkpoint(runs / f"hazn_seed{seed}" / "checkpoint.pt")
    model = predictor.model.eval()
    palette = np.asarray(val_set.palette, dtype=np.uint8).reshape(-1, 3)
    smallest = []
    for index in range(len(val_set)):
        ids = val_set[index][1].as_subclass(torch.Tensor)[1]
        sizes = torch.bincount(ids[(ids > 0) & (ids != 255)].flatten())
        smallest.append(int(sizes[sizes > 0].min()) if (sizes > 0).any() else 1 << 30)
    rows = []
    for index in np.argsort(smallest, kind="stable")[:count].tolist():
        image, target = val_set[index]
        target = target.as_subclass(torch.Tensor)
        x = predictor.normalize(image).unsqueeze(0)
        maps = []
        with torch.inference_mode():
            for objects, parts in ((False, False), (True, False), (True, True)):
                model.zoom_objects, model.zoom_parts = objects, parts
                out = model(x)
                maps.append(_colour(out["semantic"].argmax(1)[0].numpy(), palette))
        array = image.permute(1, 2, 0).numpy()
        cells = [
            _boxes(array, out["object_regions"][0], out["part_regions"][0], 2),
            _boxes(_colour(target[0].numpy(), palette), *target_regions(target), 2),
            *(_boxes(m, torch.zeros(0, 4), torch.zeros(0, 4), 2) for m in maps),
        ]
        cells.append(_zoomed(image, out["object_regions"][0], model, cells[0].shape[0]))
        rows.append(np.concatenate(cells, axis=1))
    model.zoom_objects = model.zoom_parts = True
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


ROW_NAMES = {
    "fcn": "FCN, one scale (HAZN, zooms off)",
    "fcn_plain": "FCN, one scale (plain DeepLab)",
    "attention": "attention to scale (1, 0.75, 0.5)",
    "object_zoom": "HAZN, object zoom",
    "object_part_zoom": "HAZN, object + part zoom",
    "gt_object_zoom": "object zoom, ground-truth boxes",
    "gt_object_part_zoom": "object + part zoom, ground-truth boxes",
}
"""Row -> its name in the table, in the table's order."""
BUCKETS = ("XS", "S", "M", "L")


def _cell(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table(path: Path = RESULTS / "hazn_ablation.jsonl") -> str:
    """The rows as a markdown table (part mIoU, percent): overall and per size bucket, one line
    per row and seed, then the mean over seeds in bold."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head = ["row", "seed", "part mIoU", *(f"{b} objects" for b in BUCKETS), "s / image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, name in ROW_NAMES.items():
        mine = sorted((r for r in rows if r["row"] == key), key=lambda r: r["seed"])
        for r in mine:
            cells = [_cell(r["miou"]), *(_cell(r["miou_by_size"][b]) for b in BUCKETS)]
            lines.append(
                f"| {name} | {r['seed']} | " + " | ".join(cells) + f" | {r['eval_s_per_image']} |"
            )
        if len(mine) > 1:
            values = [[r["miou"] for r in mine]] + [
                [r["miou_by_size"][b] for r in mine] for b in BUCKETS
            ]
            cells = ["-" if None in v else f"**{100 * float(np.mean(v)):.2f}**" for v in values]
            lines.append(f"| {name} | mean | " + " | ".join(cells) + " | |")
    counts = rows[0]["objects_by_size"] if rows else {}
    lines.append("")
    lines.append(
        "Held-out objects per bucket: " + ", ".join(f"{b} {counts.get(b)}" for b in BUCKETS)
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training", choices=sorted(TRAININGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the results as markdown")
    args = parser.parse_args()
    if args.table:
        print(table())
        return
    if args.pictures:
        print(pictures(args.seed))
        return
    if args.training is None:
        parser.error("give --training or --pictures")
    rows = run_training(args.training, args.seed)
    for row in rows:
        print(json.dumps({k: row[k] for k in ("row", "seed", "miou", "miou_by_size")}))
    append_rows(rows)


if __name__ == "__main__":
    main()
