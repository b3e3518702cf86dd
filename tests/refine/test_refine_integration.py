"""Where users meet refinement: Predictor(refine=...), eval/predict --crf/--domain-transform
with settings from the recipe, and DT-EdgeNet trained from a recipe."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from atrous import Predictor
from atrous.cli import main
from atrous.config import load_config
from atrous.data import read_image
from atrous.loader import load_model
from atrous.models import deeplabv3plus
from atrous.models.spec import ModelSpec
from atrous.refine import DomainTransformDeepLab, dense_crf, with_domain_transform
from atrous.training.optim import param_groups

from ..conftest import tiny_config


def val_images(data: Path) -> list[Path]:
    return [data / "images" / f"{stem}.jpg" for stem in (data / "val.txt").read_text().split()]


def test_predictor_refine_hook(tiny_checkpoint: Path, tiny_data: Path) -> None:
    calls = []

    def refine(image: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        calls.append((image.dtype, tuple(image.shape), tuple(probs.shape)))
        flipped = torch.zeros_like(probs)  # a refiner with a visible effect: class 0 -> 1
        flipped[1] = 1.0
        return flipped

    plain = Predictor.from_checkpoint(tiny_checkpoint)
    refined = Predictor.from_checkpoint(tiny_checkpoint, refine=refine)
    image = val_images(tiny_data)[0]
    probs = refined.predict_proba(image)
    assert calls[0][0] == torch.uint8 and calls[0][1][0] == 3
    assert calls[0][2] == tuple(plain.predict_proba(image).shape)
    assert torch.equal(probs[1], torch.ones_like(probs[1]))
    assert (refined.predict(image) == 1).all()
    assert all((labels == 1).all() for labels in refined.predict_batch(val_images(tiny_data)))


def test_predictor_with_the_torch_crf(tiny_checkpoint: Path, tiny_data: Path) -> None:
    image = val_images(tiny_data)[0]
    plain = Predictor.from_checkpoint(tiny_checkpoint)
    crf = partial(dense_crf, backend="torch")
    refined = Predictor.from_checkpoint(tiny_checkpoint, refine=crf)
    expected = crf(read_image(image), plain.predict_proba(image))
    torch.testing.assert_close(refined.predict_proba(image), expected)
    assert np.array_equal(refined.predict(image), expected.argmax(0).numpy())


def eval_args(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), *extra]


def test_eval_reports_each_refinement(
    tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "e.json"
    args = eval_args(
        tiny_checkpoint, tiny_data, out, "--crf", "--domain-transform", "--trimap", "2", "5"
    )
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "refinement" in printed and "trimap 2px" in printed
    assert "\ncrf " in printed and "\ndomain_transform " in printed
    picture = tmp_path / "e_refinement.png"
    columns = "image | ground truth | no refinement | domain_transform | crf"
    assert f"wrote {picture} ({columns})" in printed
    from PIL import Image

    with Image.open(picture) as png:  # 3 val images: image, truth, plain, crf, dt side by side
        width, height = png.size
    images = [Image.open(p) for p in val_images(tiny_data)]
    assert width == max(5 * im.width + 4 * 4 for im in images)
    assert height == sum(im.height + 4 for im in images)
    report = json.loads(out.read_text())
    for name in ("crf", "domain_transform"):
        entry = report["refined"][name]
        assert 0.0 <= entry["miou"] <= 1.0 and set(entry["trimap"]) == {"2", "5"}
        assert entry["seconds_per_image"] > 0
        assert sum(map(sum, report["confusion_matrix"])) == entry["num_pixels"]


def test_refine_settings_come_from_the_recipe_and_set(
    tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import atrous.refine

    seen = []

    def recorder(image, probs, **kwargs):
        seen.append(kwargs)
        return probs

    monkeypatch.setattr(atrous.refine, "dense_crf", recorder)
    out = tmp_path / "e.json"
    args = eval_args(
        tiny_checkpoint,
        tiny_data,
        out,
        "--crf",
        "--set",
        "refine.crf.iterations=0",
        "refine.crf.backend=torch",
    )
    assert main(args) == 0
    assert len(seen) == 3  # one call per val image
    assert seen[0]["iterations"] == 0 and seen[0]["backend"] == "torch"
    assert seen[0]["theta_alpha"] == 67.0 and seen[0]["w_appearance"] == 4.0  # recipe defaults
    report = json.loads(out.read_text())
    assert report["refined"]["crf"]["miou"] == report["miou"]  # an identity refinement


def test_refine_errors(tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "e.json"
    assert main(eval_args(tiny_checkpoint, tiny_data, out, "--crf", "--set", "train.lr=1")) == 2
    assert "only refine.* settings" in capsys.readouterr().err
    assert (
        main(
            eval_args(tiny_checkpoint, tiny_data, out, "--crf", "--set", "refine.crf.theta_delta=1")
        )
        == 2
    )
    assert "refine.crf.theta_delta" in capsys.readouterr().err
    args = eval_args(tiny_checkpoint, tiny_data, out, "--crf", "--set", "refine.crf.theta_beta=0")
    assert main(args) == 2
    assert "refine.crf: theta_beta must be positive" in capsys.readouterr().err


def test_predict_with_both_refinements(
    tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path
) -> None:
    images = val_images(tiny_data)[:2]
    args = [
        "predict",
        "--checkpoint",
        str(tiny_checkpoint),
        *map(str, images),
        "--out",
        str(tmp_path),
        "--crf",
        "--domain-transform",
    ]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{p.stem}.png" for p in images)


def test_recipe_refine_section(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "refine:\n  crf:\n    theta_alpha: 80\n  domain_transform:\n    sigma_s: 20\n"
    )
    cfg = load_config(recipe)
    assert cfg.refine.crf.theta_alpha == 80.0 and cfg.refine.domain_transform.sigma_s == 20.0
    assert cfg.refine.crf.w_smoothness == 3.0  # DeepLab v2 default kept


def test_dt_edgenet_trains_from_a_recipe(tiny_data: Path, tmp_path: Path) -> None:
    from atrous.training import train

    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "train.steps=2",
        "model.domain_transform=true",
        "refine.domain_transform.sigma_s=20",
    )
    result = train(cfg, progress=False)
    model, state = load_model(result["checkpoint"])
    assert isinstance(model, DomainTransformDeepLab)
    assert model.dt.sigma_s == 20.0
    assert ModelSpec.from_dict(state["model_spec"]).wrapper("domain_transform")["sigma_s"] == 20.0
    labels = Predictor.from_checkpoint(result["checkpoint"]).predict(val_images(tiny_data)[0])
    assert labels.ndim == 2


def test_wrapped_backbone_keeps_the_backbone_learning_rate() -> None:
    model = with_domain_transform(deeplabv3plus(num_classes=3, width_mult=0.25, channels=16))
    groups = param_groups(model, lr=0.1, weight_decay=0.0, head_lr_mult=10.0)
    backbone = {id(p) for p in model.model.backbone.parameters()}
    for group in groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == (0.1 if in_backbone == {True} else 1.0)
    edgenet = {id(p) for p in model.edgenet.parameters()}
    assert any(edgenet & {id(p) for p in g["params"]} for g in groups if g["lr"] == 1.0)


def test_dt_edgenet_is_not_exported(tmp_path: Path) -> None:
    from atrous.errors import AtrousError
    from atrous.export import export_onnx, export_torchscript

    model = with_domain_transform(deeplabv3plus(num_classes=3, width_mult=0.25, channels=16))
    for export in (export_onnx, export_torchscript):
        with pytest.raises(AtrousError, match="domain transform"):
            export(model, tmp_path / "m")


def test_crf_as_rnn_trains_from_a_recipe(tiny_data: Path, tmp_path: Path) -> None:
    from atrous.refine import CRFDeepLab
    from atrous.training import train

    cfg = tiny_config(
        tiny_data, tmp_path, "train.steps=2", "model.dense_crf=true", "refine.crf.iterations=2"
    )
    result = train(cfg, progress=False)
    model, state = load_model(result["checkpoint"])
    assert isinstance(model, CRFDeepLab) and model.crf.params.iterations == 2
    assert ModelSpec.from_dict(state["model_spec"]).wrapper("dense_crf")["mean"] == list(
        cfg.data.mean
    )
    # the kernel weights were trained (they started at the recipe's values)
    assert model.crf.w_appearance.item() != cfg.refine.crf.w_appearance
    labels = Predictor.from_checkpoint(result["checkpoint"]).predict(val_images(tiny_data)[0])
    assert labels.ndim == 2


def test_crf_layer_sees_the_original_image() -> None:
    """CRFDeepLab maps the normalized input back to the 0..255 image the CRF kernels use."""
    from atrous.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
    from atrous.refine import with_dense_crf

    seen = []
    model = with_dense_crf(
        deeplabv3plus(num_classes=3, width_mult=0.25, channels=16),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ).eval()
    model.crf.forward = lambda logits, image: seen.append(image) or logits  # type: ignore[method-assign]
    image = torch.randint(0, 256, (3, 33, 35), dtype=torch.uint8)
    with torch.no_grad():
        model(eval_transforms()(tv_tensors.Image(image))[None])
    assert torch.equal(seen[0][0], image.float())


def test_crf_model_is_not_exported(tmp_path: Path) -> None:
    from atrous.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from atrous.errors import AtrousError
    from atrous.export import export_onnx
    from atrous.refine import with_dense_crf

    model = with_dense_crf(
        deeplabv3plus(num_classes=3, width_mult=0.25, channels=16),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    with pytest.raises(AtrousError, match="dense CRF"):
        export_onnx(model, tmp_path / "m.onnx")


def test_crf_search_cli(tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "search.json"
    args = ["crf-search", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_data)]
    assert main([*args, "--images", "2", "--backend", "torch", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "use: --crf --set refine.crf.w_appearance=" in printed
    found = json.loads(out.read_text())
    assert len(found["results"]) == 4 * 8 * 4  # the papers' grid
    mious = [r["miou"] for r in found["results"]]
    assert mious == sorted(mious, reverse=True)


def test_crf_search_scores_the_plain_predictions_like_eval(
    tiny_checkpoint: Path, tiny_data: Path, tmp_path: Path
) -> None:
    from atrous.evaluation import evaluate_checkpoint, search_crf_checkpoint

    grid = {"w_appearance": (0.0, 4.0)}
    found = search_crf_checkpoint(
        tiny_checkpoint, tiny_data, images=100, grid=grid, backend="torch", progress=False
    )
    assert [sorted(r) for r in found["results"]] == [["miou", "w_appearance"]] * 2
    result, _ = evaluate_checkpoint(tiny_checkpoint, tiny_data, progress=False)
    assert found["miou_without_crf"] == result["miou"]  # all 3 val images, same predictions
