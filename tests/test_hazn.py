"""HAZN (issue #32): the model's training and eval outputs, the zoom's identity and locality, the
parts task's loss and its by-object-size evaluator, and the task's registration."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from atrous.config import load_config
from atrous.data import build_dataset
from atrous.data.synthetic_parts import make_synthetic_parts
from atrous.errors import ConfigError
from atrous.models import HAZN, MODELS, hazn
from atrous.models.hazn import target_regions
from atrous.models.heads.largefov import LargeFOV
from atrous.tasks import TASKS, PartsEvaluator, PartsTask, SemanticEvaluator


def _small(**options: object) -> HAZN:
    """A CPU-sized HAZN with non-trivial BN statistics (so its scores vary over the image) and
    scale heads whose boxes start at a third of the image's side (so they propose regions)."""
    kwargs = {"backbone": "mobilenetv2", "num_parts": 3, "width_mult": 0.25, "channels": 16}
    model = hazn(**{**kwargs, "max_regions": 3, "target_size": 48.0, **options})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 1.0)
        for head in (model.object_head, model.part_head):
            head.boxes.bias.copy_(torch.tensor([0.0, 0.0, 0.33, 0.33]))
    return model


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_the_builder_is_registered_and_checks_its_classes() -> None:
    assert MODELS["hazn"] is hazn
    paper = hazn()  # the paper's FCN: DeepLab-LargeFOV on VGG-16, 7 Person-Part classes
    assert isinstance(paper.fcn.head, LargeFOV) and paper.num_classes == 7
    assert paper.output_stride == 8 and paper.output_strides == (8, 16, 32)
    assert hazn(num_classes=7).num_classes == 7  # recipes pass num_classes
    with pytest.raises(ValueError, match="num_classes 5 != num_parts 7"):
        hazn(num_classes=5)
    with pytest.raises(ValueError, match="width_mult"):
        hazn(width_mult=0.5)
    with pytest.raises(ValueError, match="merge"):
        _small(merge="median")


def test_training_outputs_part_logits_and_both_scale_maps_at_input_size() -> None:
    out = _small().train()(torch.randn(2, 3, 37, 45))
    assert out["out"].shape == (2, 3, 37, 45)
    for key in ("object_scale", "part_scale"):
        assert out[key]["boxes"].shape == (2, 4, 37, 45)
        assert out[key]["confidence_logits"].shape == (2, 1, 37, 45)


@pytest.mark.parametrize("detach", [False, True])
def test_detached_scale_heads_send_no_gradient_into_the_backbone(detach: bool) -> None:
    model = _small(detach_features=detach).train()
    out = model(torch.randn(2, 3, 32, 32))
    scale = sum(
        v.square().mean() for key in ("object_scale", "part_scale") for v in out[key].values()
    )
    scale.backward()
    backbone = [p.grad for p in model.fcn.backbone.parameters() if p.requires_grad]
    reached = any(g is not None and g.abs().sum() > 0 for g in backbone)
    assert reached != detach
    assert model.object_head.conv.weight.grad.abs().sum() > 0  # the heads themselves still learn


@pytest.mark.parametrize("size", [(33, 47), (50, 61)])
def test_eval_zooms_proposed_regions_at_odd_sizes(size: tuple[int, int]) -> None:
    model = _small(min_confidence=0.0).eval()  # every pixel a candidate: regions for sure
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out["semantic"].shape == (2, 3, *size)
    for regions in (*out["object_regions"], *out["part_regions"]):
        assert 1 <= len(regions) <= 3
        assert (regions[:, :2] >= 0).all() and (regions[:, 2:] > regions[:, :2]).all()
        assert (regions[:, 2] <= size[1]).all() and (regions[:, 3] <= size[0]).all()


def test_without_regions_the_scores_are_the_fcn_logits() -> None:
    model = _small(min_confidence=0.0).eval()
    x = torch.randn(1, 3, 35, 41)
    with torch.no_grad():
        plain = model.fcn(x)
        assert torch.equal(model.forward_regions(x)["semantic"], plain)
        model.zoom_objects = model.zoom_parts = False
        out = model(x)
    assert torch.equal(out["semantic"], plain)
    assert [len(r) for r in out["object_regions"] + out["part_regions"]] == [0, 0]


@pytest.mark.parametrize("level", ["object_regions", "part_regions"])
def test_a_zoomed_region_changes_the_scores_inside_it_only(level: str) -> None:
    model = _small().eval()
    x = torch.randn(1, 3, 40, 48)
    region = torch.tensor([[10.0, 8.0, 30.0, 26.0]])  # whole pixels: pasted exactly there
    with torch.no_grad():
        plain = model.fcn(x)
        zoomed = model.forward_regions(x, **{level: [region]})["semantic"]
    inside = torch.zeros(40, 48, dtype=torch.bool)
    inside[8:26, 10:30] = True
    assert torch.equal(zoomed[..., ~inside], plain[..., ~inside])
    assert not torch.allclose(zoomed[..., inside], plain[..., inside])
    assert (zoomed >= plain).all()  # merge "max"
    with pytest.raises(ValueError, match="2 region sets for a batch of 1"):
        model.forward_regions(x, object_regions=[region, region])


def _batch(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = make_synthetic_parts(root, num_train=2, num_val=1, size=(64, 64), seed=1)
    items = [build_dataset("person_part", data, "train")[i] for i in range(2)]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = torch.stack([(image.float() / 255 - mean) / std for image, _ in items])
    return images, torch.stack([mask.as_subclass(torch.Tensor) for _, mask in items])


def test_ground_truth_regions_zoom_the_objects_and_parts(tmp_path: Path) -> None:
    images, masks = _batch(tmp_path / "parts")
    objects, parts = target_regions(masks[0])
    ids = masks[0, 1][masks[0, 1] != 255].unique()
    assert len(objects) == int((ids > 0).sum()) and len(parts) >= len(objects)
    one = masks[0, 1] == ids[ids > 0][0]
    rows, cols = one.nonzero().T
    box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    assert objects[0].tolist() == [float(v) for v in box]
    model = _small(num_parts=7).eval()
    with torch.no_grad():
        out = model.forward_regions(images[:1], [objects], [parts])
    assert out["semantic"].shape == (1, 7, 64, 64) and out["object_regions"][0] is objects
    padded = torch.zeros(3, 8, 8, dtype=torch.long)
    padded[:, 6:] = 255  # the train transforms' padding is no instance
    padded[1:, 1:3, 1:4] = 7
    assert [r.tolist() for r in target_regions(padded)] == [[[1.0, 1.0, 4.0, 3.0]]] * 2


def test_the_parts_loss_falls_over_a_few_adam_steps(tmp_path: Path) -> None:
    images, masks = _batch(tmp_path / "parts")
    assert masks.shape == (2, 3, 64, 64) and int(masks[:, 1].max()) >= 1
    model = _small(num_parts=7).train()
    task = TASKS["parts"]()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        step = task.loss(model(images), masks)
        optimizer.zero_grad()
        step.loss.backward()
        optimizer.step()
        losses.append(step.loss.item())
    assert int(step.pixels) == int((masks[:, 0] != 255).sum())
    assert losses[-1] < 0.8 * losses[0], losses


def test_the_parts_task_is_registered_and_resolved(tmp_path: Path) -> None:
    assert TASKS["parts"] is PartsTask and PartsTask.name == "parts"
    assert PartsTask.main_metric == "miou"
    mask = torch.randint(0, 4, (3, 5, 6))
    semantic, whole = PartsTask().split_target(mask)
    assert torch.equal(semantic, mask[0]) and whole is mask
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "hazn"}, "data": {"dataset": "person_part"}}))
    assert load_config(path).task == "parts"
    path.write_text(yaml.safe_dump({"task": "parts", "data": {"dataset": "voc"}}))
    with pytest.raises(ConfigError, match="task: parts reads a part data set"):
        load_config(path)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        PartsTask().loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


def _case() -> SimpleNamespace:
    """A 16 x 16 image: object 1 (2 px, bucket S) and object 2 (8 x 8 = a quarter, bucket XL)."""
    target = torch.zeros(3, 16, 16, dtype=torch.long)
    target[1, 0, 0:2] = 1
    target[0, 0, 0], target[0, 0, 1] = 1, 2
    target[1, 8:16, 8:16] = 2
    target[0, 8:12, 8:16], target[0, 12:15, 8:16] = 1, 2  # row 15 of it unparsed (0)
    target[0, 3, 3] = 255
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[0, 0:2] = 1  # object 1: part 1 right, part 2 taken for part 1
    labels[8:12, 8:16], labels[12:16, 8:16] = 1, 2  # object 2: its background row as part 2
    labels[5, 5] = 1  # outside every object: in no bucket
    return SimpleNamespace(labels=labels, mask=target[0], target=target)


def test_miou_by_object_size_by_hand() -> None:
    evaluator = PartsEvaluator(3)
    case = _case()
    evaluator.update(case)
    got = evaluator.compute()
    whole = SemanticEvaluator(3)
    whole.update(case)
    assert got["miou"] == whole.compute()["miou"]
    # S: part 1 IoU 1 / (1 + 2 - 1), part 2 IoU 0, background absent: (0.5 + 0) / 2
    assert got["miou_by_size"]["S"] == pytest.approx(0.25)
    # XL: part 1 IoU 1, part 2 24 / 32, background (0 of 8) left out of the mean
    assert got["miou_by_size"]["XL"] == pytest.approx(0.875)
    assert got["iou_by_size"]["XL"] == pytest.approx([0.0, 1.0, 0.75])
    assert all(math.isnan(got["miou_by_size"][b]) for b in ("XS", "M", "L"))
    assert got["objects_by_size"] == {"XS": 0, "S": 1, "M": 0, "L": 0, "XL": 1}
    merged = PartsEvaluator(3)
    merged.update(case)
    merged.merge(evaluator).all_reduce(torch.device("cpu"))  # one process: a no-op
    assert merged.compute()["objects_by_size"]["XL"] == 2
    assert merged.compute()["miou_by_size"]["XL"] == pytest.approx(0.875)
    merged.reset()
    assert math.isnan(merged.compute()["miou_by_size"]["XL"])


def test_size_table_prints_each_bucket() -> None:
    from atrous.evaluation import size_table

    text = size_table(
        {"miou_by_size": {"XS": 0.125, "S": float("nan")}, "objects_by_size": {"XS": 3}}
    )
    rows = text.splitlines()
    assert rows[1].split() == ["XS", "12.50", "3"] and rows[2].split() == ["S", "-", "0"]
