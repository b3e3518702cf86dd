"""Model cards: the README.md that save_pretrained / push_to_hub write (the Hub's front matter,
parsed by huggingface_hub.ModelCard; a usage snippet that runs) and metrics_from_run."""

from __future__ import annotations

import builtins
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from atrous.errors import CheckpointError
from atrous.models import from_pretrained, save_pretrained
from atrous.models.convert import card as card_module
from atrous.models.convert import registry
from atrous.models.convert.card import MARK, metrics_from_run
from atrous.models.spec import ModelSpec

SPEC = ModelSpec("deeplabv3plus", {"num_classes": 3, "width_mult": 0.25, "channels": 16})
CLASSES = ["background", "cat", "dog"]
PROTOCOL = {"split": "val", "scales": [0.5, 1.0, 1.5], "flip": True, "step": 3000}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return SPEC.build().eval()


def _save(directory: Path, **card) -> Path:
    return save_pretrained(_model(), directory, spec=SPEC, classes=CLASSES, **card)


def _front_matter(path: Path) -> dict:
    text = path.read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fail(name, *args, **kwargs):
        if name == "huggingface_hub" or name.startswith("huggingface_hub."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m.startswith("huggingface_hub")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", fail)


def test_card_parses_with_huggingface_hub(tmp_path: Path):
    hub = pytest.importorskip("huggingface_hub")
    directory = _save(
        tmp_path / "mine",
        metrics={"miou": 0.7812, "pq": 0.5034},
        protocol=PROTOCOL,
        license="mit",
        datasets=["pascal_voc"],
        tags=["voc"],
    )
    assert {p.name for p in directory.iterdir()} == {
        "README.md",
        "config.json",
        "model.safetensors",
    }
    card = hub.ModelCard.load(directory / "README.md")
    data = card.data
    assert data.library_name == "atrous" and data.pipeline_tag == "image-segmentation"
    assert data.license == "mit" and data.datasets == ["pascal_voc"]
    assert {"deeplab", "deeplabv3plus", "mobilenetv2", "voc"} <= set(data.tags)
    assert data.model_name == "deeplabv3plus-mobilenetv2"
    results = {r.metric_type: r for r in data.eval_results}
    assert results["mean_iou"].metric_value == pytest.approx(78.12)
    assert results["panoptic_quality"].metric_value == pytest.approx(50.34)
    miou = results["mean_iou"]
    assert miou.task_type == "image-segmentation" and miou.dataset_type == "pascal_voc"
    assert miou.dataset_split == "val"
    # the protocol: the model's own output stride filled in, scales and flip as given
    assert miou.metric_args == {"output_stride": 16, "scales": [0.5, 1.0, 1.5], "flip": True}
    assert miou.metric_name == "mIoU (val, OS16, scales 0.5/1/1.5, flip)"
    # the body: what the model is, the results table with its protocol, preprocessing, usage
    text = card.text
    assert "| backbone | `mobilenetv2` |" in text and "| output stride | 16 |" in text
    assert "3: 0 `background`, 1 `cat`, 2 `dog`" in text
    assert "| mIoU | 78.12 | val | 16 | 0.5, 1, 1.5 | yes | 3000 |" in text
    assert "mean (0.485, 0.456, 0.406)" in text and "pads its input" in text
    assert MARK in text.splitlines()


def test_usage_snippet_runs_and_loads_the_same_model(tmp_path: Path, monkeypatch, capsys):
    model = _model()
    directory = save_pretrained(model, tmp_path / "mine", spec=SPEC, classes=CLASSES)
    text = (directory / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet and "from atrous.models import from_pretrained" in snippet.group(1)
    assert f"from_pretrained({json.dumps(str(directory))})" in snippet.group(1)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((37, 45, 3), 128, np.uint8)).save(tmp_path / "photo.jpg")
    namespace: dict = {}
    exec(compile(snippet.group(1), "README.md", "exec"), namespace)
    assert namespace["labels"].shape == (37, 45) and namespace["labels"].dtype == torch.int64
    printed = capsys.readouterr().out
    assert set(eval(printed)) <= set(CLASSES)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(namespace["model"](x), model(x))
    assert from_pretrained(directory)[1]["card"]["license"] == "apache-2.0"


def test_card_without_huggingface_hub_has_the_same_front_matter(tmp_path: Path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    options = dict(metrics={"miou": 0.6}, protocol=PROTOCOL, datasets="cityscapes", tags=["x"])
    with_hub = _front_matter(_save(tmp_path / "hub", **options) / "README.md")
    _no_hub(monkeypatch)
    with pytest.raises(ImportError):
        import huggingface_hub  # noqa: F401
    directory = _save(tmp_path / "plain", **options)
    without = _front_matter(directory / "README.md")
    assert without == with_hub
    assert without["library_name"] == "atrous" and without["pipeline_tag"] == "image-segmentation"
    assert without["license"] == "apache-2.0" and without["datasets"] == ["cityscapes"]
    (result,) = without["model-index"][0]["results"]
    assert result["dataset"] == {"name": "cityscapes", "type": "cityscapes", "split": "val"}
    assert result["metrics"][0]["value"] == 60.0 and result["metrics"][0]["type"] == "mean_iou"
    assert from_pretrained(directory)[0] is not None  # loading needs no huggingface_hub either


def test_card_without_hub_and_without_metrics(tmp_path: Path, monkeypatch):
    _no_hub(monkeypatch)
    meta = _front_matter(_save(tmp_path / "plain") / "README.md")
    assert meta == {
        "library_name": "atrous",
        "license": "apache-2.0",
        "pipeline_tag": "image-segmentation",
        "tags": ["deeplab", "semantic-segmentation", "deeplabv3plus", "mobilenetv2"],
    }


def test_card_options_and_checks(tmp_path: Path):
    directory = _save(tmp_path / "none", card=False)
    assert not (directory / "README.md").exists()
    with pytest.raises(ValueError, match="fractions in"):
        _save(tmp_path / "bad", metrics={"miou": 78.1})
    with pytest.raises(ValueError, match="unknown key 'mIoU'"):
        _save(tmp_path / "bad", metrics={"mIoU": 0.7})
    with pytest.raises(ValueError, match="protocol: unknown"):
        _save(tmp_path / "bad", protocol={"scale": [1]})
    # a hand-written README is kept; a card atrous wrote is replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# my own words\n")
    _save(mine, metrics={"miou": 0.5})
    assert (mine / "README.md").read_text() == "# my own words\n"
    again = _save(tmp_path / "again", metrics={"miou": 0.5})
    _save(again, metrics={"miou": 0.25})
    assert "| mIoU | 25.00 |" in (again / "README.md").read_text()
    # a whole metrics.json result: its mIoU and panoptic PQ, nothing else
    whole = {"miou": 0.5, "iou": [0.5, None], "classes": ["a", "b"], "panoptic": {"pq": 0.25}}
    assert card_module.check_metrics(whole) == {"miou": 0.5, "pq": 0.25}


def test_push_to_hub_writes_the_card_for_the_repo(tmp_path: Path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    directory = _save(tmp_path / "mine", metrics={"miou": 0.7}, protocol={"split": "val"})
    uploaded = {}
    monkeypatch.setattr(hub, "create_repo", lambda repo_id, **kw: None)

    def upload_folder(*, repo_id, folder_path, **options):
        uploaded.update({p.name: p.read_text() for p in Path(folder_path).glob("*.md")})

    monkeypatch.setattr(hub, "upload_folder", upload_folder)
    assert registry.push_to_hub(directory, "someone/demo") == "hf-hub:someone/demo"
    readme = uploaded["README.md"]
    assert 'from_pretrained("hf-hub:someone/demo")' in readme
    card = hub.ModelCard(readme)
    assert card.data.eval_results[0].metric_value == pytest.approx(70.0)


def _write_run(out: Path, evals: list[dict], final: dict | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [{"step": 1, "loss": 2.0, "lr": 0.01}]
    for record in evals:
        lines += [{"step": record["step"], "loss": 1.0}, record]
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if final is not None:
        (out / "metrics.json").write_text(json.dumps(final, indent=2))
    return out


def _eval(step: int, miou: float, **extra) -> dict:
    metrics = {"miou": miou, "iou": [miou, None], "pixel_accuracy": 0.9, "num_pixels": 10}
    return {"step": step, "split": "val", "eval": metrics, **extra}


def test_metrics_from_run_final_evaluation(tmp_path: Path):
    final = {"miou": 0.61, "iou": [0.6, 0.62], "classes": ["a", "b"], "split": "val", "step": 40}
    run = _write_run(tmp_path / "run", [_eval(40, 0.61)], final)
    got = metrics_from_run(run)
    assert got == {
        "metrics": {"miou": 0.61, "pixel_accuracy": 0.9},
        "protocol": {"split": "val", "step": 40, "scales": [1.0], "flip": False},
    }
    # metrics.json alone (no log)
    (run / "train_log.jsonl").unlink()
    assert metrics_from_run(run)["metrics"] == {"miou": 0.61}


def test_metrics_from_run_with_eval_every(tmp_path: Path):
    evals = [_eval(10, 0.40), _eval(20, 0.55), _eval(30, 0.50), _eval(40, 0.52)]
    final = {"miou": 0.52, "split": "val", "step": 40, "classes": ["a", "b"]}
    run = _write_run(tmp_path / "run", evals, final)
    # no marker: the highest mIoU
    assert metrics_from_run(run)["protocol"]["step"] == 20
    assert metrics_from_run(run)["metrics"]["miou"] == 0.55
    # the weights of a given step (checkpoint.pt: the last one)
    assert metrics_from_run(run, step=40)["metrics"]["miou"] == 0.52
    with pytest.raises(CheckpointError, match="no evaluation at step 25.*10, 20, 30, 40"):
        metrics_from_run(run, step=25)
    # a record marked best wins over a higher score, and so does a marker naming a step
    marked = _write_run(tmp_path / "marked", [_eval(10, 0.6), _eval(20, 0.5, best=True)])
    assert metrics_from_run(marked)["protocol"]["step"] == 20
    pointer = _write_run(tmp_path / "pointer", [_eval(10, 0.6), _eval(20, 0.5)])
    with (pointer / "train_log.jsonl").open("a") as log:
        log.write(json.dumps({"step": 20, "best": {"metric": "miou", "value": 0.5, "step": 10}}))
    assert metrics_from_run(pointer)["protocol"]["step"] == 10


def test_metrics_from_run_panoptic_and_into_the_card(tmp_path: Path):
    hub = pytest.importorskip("huggingface_hub")
    panoptic = {"pq": 0.31, "sq": 0.7, "rq": 0.4, "pc": 0.5, "per_class_pq": [0.3, 0.32]}
    record = {"step": 50, "split": "val", "eval": {"miou": 0.45, "panoptic": panoptic}}
    other = {"step": 25, "split": "val", "eval": {"miou": 0.46, "panoptic": {"pq": 0.2}}}
    run = _write_run(tmp_path / "run", [other, record])
    got = metrics_from_run(run, metric="panoptic.pq")
    assert got["metrics"] == {"miou": 0.45, "pq": 0.31, "sq": 0.7, "rq": 0.4}
    directory = _save(tmp_path / "model", datasets=["cityscapes"], **got)
    data = hub.ModelCard.load(directory / "README.md").data
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    assert values == {
        "mean_iou": 45.0,
        "panoptic_quality": 31.0,
        "segmentation_quality": 70.0,
        "recognition_quality": 40.0,
    }
    assert {r.dataset_split for r in data.eval_results} == {"val"}
    assert "panoptic-segmentation" in data.tags


def test_metrics_from_run_without_evaluations(tmp_path: Path):
    run = _write_run(tmp_path / "run", [])
    with pytest.raises(CheckpointError, match="no evaluation found"):
        metrics_from_run(run)
