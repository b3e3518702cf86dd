"""``atrous demo --task vqa``: ABC-CNN (Chen et al. 2015) on the shape-QA set
(:mod:`atrous.data.synthetic_qa`), scored on held-out scenes: accuracy overall and per
question type, and the attention IoU (:func:`atrous.metrics.vqa.attention_iou`: the top-``k``
pixels of the question-guided attention map, resized to the image, ``k`` the area of the mask
of the object the question is about, against that mask), with the attention maps drawn over
the images for a few questions (``attention.png``).

Two stages, as in the paper (its image features are a pretrained network's):

1. :func:`pretrain_features`: a DeepLabv3 (MobileNetV2 width 0.5 at OS8: 8 x 8 features of
   the 64-px scenes) learns to segment the training scenes into shape-and-colour classes
   (:meth:`~atrous.data.synthetic_qa.ShapeQA.segmentation_labels`).
2. :func:`train_vqa`: ABC-CNN on that backbone, frozen (``freeze_backbone``), learns the
   question encoder, the configurable kernels and the classifier.

Trained end to end from scratch instead, neither the attention nor the answers learn in a
demo's budget (benchmarks/results/abc_cnn.md). The step is the task's
(:class:`atrous.tasks.vqa.VQATask`: ``collate``, ``forward``, ``loss``, ``evaluator``) in a
loop of its own: the house loop (:func:`atrous.training.train`) predicts and scores pixels.
Settings (chosen, demo scale): Adam with a poly decay (3e-3, batch 16) for the features,
Adam 1e-3, batch 32 for ABC-CNN; no augmentation (a flip would change the location answers).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data.synthetic_qa import SEGMENTATION_CLASSES, ShapeQA, make_shape_qa
from .demo_tasks import _fresh
from .metrics.confusion import ConfusionMatrix
from .metrics.vqa import AttentionIoU
from .models import abc_cnn, deeplabv3
from .tasks.vqa import VQATask

NUM_TRAIN, NUM_VAL, VAL_SEED_OFFSET = 3000, 300, 1000
"""Training and held-out scenes (about 3.7 questions each); held-out ones from seed + 1000."""
FEATURE_STEPS, FEATURE_BATCH, FEATURE_LR = 1500, 16, 3e-3
STEPS, BATCH, LR = 3000, 32, 1e-3
MODEL_OPTIONS: dict[str, Any] = {
    "backbone": "mobilenetv2", "width_mult": 0.5, "output_stride": 8, "channels": 64,
}  # fmt: skip
BACKBONE_KEYS = ("backbone", "width_mult", "output_stride")


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pretrain_features(
    train_set: ShapeQA,
    *,
    steps: int = FEATURE_STEPS,
    batch_size: int = FEATURE_BATCH,
    lr: float = FEATURE_LR,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
    model_options: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[float]]:
    """A DeepLabv3 on ABC-CNN's backbone (``model_options``' backbone, width and output
    stride) trained ``steps`` batches to segment ``train_set``'s scenes into
    :data:`~atrous.data.synthetic_qa.SEGMENTATION_CLASSES` (Adam, poly decay 0.9). Returns
    it in eval mode (its ``backbone`` gives ABC-CNN's features) and the per-step losses."""
    dev = _device(device)
    torch.manual_seed(seed)
    options = {**MODEL_OPTIONS, **(model_options or {})}
    net = deeplabv3(**{k: options[k] for k in BACKBONE_KEYS},
                    num_classes=len(SEGMENTATION_CLASSES)).to(dev).train()  # fmt: skip
    task = VQATask()
    labels = train_set.segmentation_labels()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    poly = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / steps) ** 0.9)
    order = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    bar = tqdm(range(steps), desc="features", unit="step", disable=not progress)
    for step in bar:
        index = torch.randint(0, len(labels), (batch_size,), generator=order)
        images = task.normalize(train_set.images[index]).to(dev)
        loss = F.cross_entropy(net(images), labels[index].to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        poly.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.3f}")
    return net.eval(), losses


@torch.no_grad()
def feature_miou(net: nn.Module, val_set: ShapeQA, batch_size: int = 64) -> float:
    """The pretrained features' segmentation mIoU on ``val_set``'s scenes (a fraction)."""
    task, labels = VQATask(), val_set.segmentation_labels()
    confusion = ConfusionMatrix(len(SEGMENTATION_CLASSES))
    dev = next(net.parameters()).device
    for start in range(0, len(labels), batch_size):
        images = task.normalize(val_set.images[start : start + batch_size]).to(dev)
        confusion.update(net(images).argmax(1).cpu(), labels[start : start + batch_size])
    return float(confusion.compute()["miou"])


def train_vqa(
    train_set: ShapeQA,
    *,
    use_attention: bool = True,
    backbone: nn.Module | None = None,
    steps: int = STEPS,
    batch_size: int = BATCH,
    lr: float = LR,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
    model_options: dict[str, Any] | None = None,
) -> tuple[nn.Module, VQATask, list[float]]:
    """ABC-CNN (or, ``use_attention=False``, the same network without attention) trained for
    ``steps`` batches drawn without replacement each epoch; with a ``backbone`` (e.g.
    :func:`pretrain_features`' ``.backbone``, of ``model_options``' kind), on its features,
    frozen. Returns the model (eval mode), the task (its vocabulary and answers) and the
    per-step losses."""
    dev = _device(device)
    torch.manual_seed(seed)
    task = VQATask()
    options = {**MODEL_OPTIONS, **(model_options or {})}
    model = abc_cnn(**options, **task.model_options(train_set), use_attention=use_attention,
                    freeze_backbone=backbone is not None)  # fmt: skip
    if backbone is not None:
        model.backbone.load_state_dict(backbone.state_dict())
    task.bind(model)
    model.to(dev).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    # a frozen backbone's maps do not change: computed once per scene, not once per question
    maps = _backbone_maps(model, task, train_set) if backbone is not None else None
    order = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    batches: list[list[int]] = []
    bar = tqdm(range(steps), desc="abc-cnn", unit="step", disable=not progress)
    for step in bar:
        if not batches:
            perm = torch.randperm(len(train_set), generator=order).tolist()
            batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
        batch = batches.pop(0)
        if maps is None:
            images, targets = task.collate([train_set[i] for i in batch])
            outputs = task.forward(model, images.to(dev), _to(targets, dev))
        else:
            targets = task.targets([train_set.items[i] for i in batch])
            scenes = torch.tensor([train_set.items[i]["image_id"] for i in batch])
            outputs = model.head(model.encode(maps[scenes]), targets["questions"].to(dev))
        loss = task.loss(outputs, _to(targets, dev)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.3f}")
    return model.eval(), task, losses


@torch.no_grad()
def _backbone_maps(model: nn.Module, task: VQATask, data: ShapeQA, batch_size: int = 64) -> Tensor:
    """The frozen backbone's ``"out"`` map of every scene in ``data`` (``[scenes, C, h, w]``)."""
    dev = next(model.parameters()).device
    return torch.cat([
        model.backbone(task.normalize(data.images[i : i + batch_size]).to(dev))["out"]
        for i in range(0, len(data.images), batch_size)
    ])  # fmt: skip


def _to(targets: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in targets.items()}


@torch.no_grad()
def evaluate_vqa(
    model: nn.Module, task: VQATask, val_set: ShapeQA, batch_size: int = 64
) -> dict[str, Any]:
    """The task's evaluator (``accuracy``, ``per_type``) and, for a model with attention, the
    attention IoU and mass with each question's object mask (``attention_iou``, ...)."""
    evaluator, attention = task.evaluator(), AttentionIoU()
    dev = next(model.parameters()).device
    for start in range(0, len(val_set), batch_size):
        batch = [val_set[i] for i in range(start, min(start + batch_size, len(val_set)))]
        images, targets = task.collate(batch)
        images, questions = images.to(dev), targets["questions"].to(dev)
        evaluator.update((model(images, questions).cpu(), targets))
        if model.use_attention:
            maps = model.attention_maps(images, questions).cpu()
            attention.update(maps, targets["masks"], targets["types"])
    metrics = evaluator.compute()
    return {**metrics, **attention.compute()} if model.use_attention else metrics


@torch.no_grad()
def draw_attention(
    model: nn.Module, task: VQATask, val_set: ShapeQA, path: Path, count: int = 8
) -> Path:
    """``count`` held-out questions (two of each type where there are): the image with the
    object's outline (white), under it the attention map (resized bilinearly; bright = more
    attention) with the outline (cyan), the question, the predicted and the true answer."""
    picks: list[int] = []
    for kind in ("object", "colour", "count", "location"):
        picks += [i for i, t in enumerate(val_set.types) if t == kind][: count // 4]
    images, targets = task.collate([val_set[i] for i in picks])
    dev = next(model.parameters()).device
    maps = model.attention_maps(images.to(dev), targets["questions"].to(dev)).cpu()
    answers = task.predict(model(images.to(dev), targets["questions"].to(dev)).cpu())
    scale, tiles = 3, []
    for index, a, m, q, p, t in zip(picks, maps, targets["masks"], targets["questions"], answers,
                                    targets["answers_text"], strict=True):  # fmt: skip
        image = val_set[index][0].permute(1, 2, 0).numpy().astype(np.float64)
        h, w = image.shape[:2]
        up = F.interpolate(a[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        # the map on its own, bright where the attention is (a red overlay hides on red shapes)
        heat = np.repeat((255 * up / up.max()).numpy()[..., None], 3, axis=2)
        outline = _outline(m.numpy())
        image[outline], heat[outline] = 255, (0, 200, 255)
        pair = np.concatenate([image, heat], axis=0).clip(0, 255).astype(np.uint8)
        tile = Image.fromarray(pair).resize((w * scale, 2 * h * scale), Image.Resampling.NEAREST)
        canvas = Image.new("RGB", (w * scale, 2 * h * scale + 36), "white")
        canvas.paste(tile, (0, 0))
        draw = ImageDraw.Draw(canvas)
        draw.text((2, 2 * h * scale + 2), task.vocab.decode(q.tolist()), fill="black")
        draw.text((2, 2 * h * scale + 18), f"{p} ({'ok' if p == t else 'truth: ' + t})",
                  fill="darkgreen" if p == t else "red")  # fmt: skip
        tiles.append(canvas)
    sheet = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * tiles[0].width, 0))
    sheet.save(path)
    return path


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels that have a 4-neighbour outside it."""
    p = np.pad(mask, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def run_vqa_demo(
    out: str | Path = "atrous-demo-vqa",
    *,
    steps: int | None = None,
    feature_steps: int = FEATURE_STEPS,
    num_train: int = NUM_TRAIN,
    num_val: int = NUM_VAL,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    use_attention: bool = True,
) -> dict[str, Any]:
    """Make the shape-QA set, pretrain the features on its scenes (``feature_steps``), train
    ABC-CNN on them (``steps``, default :data:`STEPS`), score the held-out scenes into
    ``out/metrics.json`` (``accuracy``, ``per_type``, ``attention_iou``, ``feature_miou``:
    fractions), draw ``out/attention.png`` and save ``out/checkpoint.pt``
    (weights, builder options) and ``out/vqa_vocab.json``. Returns ``{"metrics", "seconds",
    "checkpoint"}``."""
    start = time.perf_counter()
    out = _fresh(out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = make_shape_qa(num_train, seed=seed)
    val_set = make_shape_qa(num_val, seed=seed + VAL_SEED_OFFSET)
    features, _ = pretrain_features(
        train_set, steps=feature_steps, seed=seed, device=device, progress=progress
    )
    model, task, losses = train_vqa(
        train_set, use_attention=use_attention, backbone=features.backbone,
        steps=steps or STEPS, seed=seed, device=device, progress=progress,
    )  # fmt: skip
    metrics = evaluate_vqa(model, task, val_set)
    metrics["feature_miou"] = feature_miou(features, val_set)
    metrics.update(first_loss=float(np.mean(losses[:20])), last_loss=float(np.mean(losses[-20:])))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if use_attention:
        draw_attention(model, task, val_set, out / "attention.png")
    task.save(out / "vqa_vocab.json")
    options = {**MODEL_OPTIONS, **task.model_options(train_set), "use_attention": use_attention,
               "freeze_backbone": True}  # fmt: skip
    checkpoint = out / "checkpoint.pt"
    saved = {"model": model.state_dict(), "builder": "abc_cnn", "options": options,
             "vocab": task.vocab.words, "answers": task.answer_set.answers}  # fmt: skip
    torch.save(saved, checkpoint)
    return {"metrics": metrics, "seconds": time.perf_counter() - start, "checkpoint": checkpoint}


def vqa_report(result: dict[str, Any], out: str | Path) -> str:
    m = result["metrics"]
    rows = [f"{'type':<10} {'accuracy':>9} {'attention IoU':>14}"]
    for kind, value in m["per_type"].items():
        iou = m.get("attention_iou_per_type", {}).get(kind, float("nan"))
        rows.append(f"{kind:<10} {100 * value:>8.1f}% {100 * iou:>13.1f}%")
    iou = m.get("attention_iou", float("nan"))
    return "\n".join(rows) + (
        f"\nvqa demo: accuracy {100 * m['accuracy']:.1f}%, attention IoU {100 * iou:.1f}% on "
        f"{m['questions']} held-out questions in {result['seconds']:.0f} s; metrics.json, "
        f"attention.png and checkpoint.pt in {out}"
    )
