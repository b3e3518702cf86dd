"""The weights registry with local files (hash checks, the offline error, the cache) and
sharing trained models through a directory and a pre-filled Hugging Face Hub cache."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from atrous.errors import CheckpointError, ConfigError
from atrous.models import (
    deeplabv3,
    deeplabv3plus,
    from_pretrained,
    from_weights,
    list_weights,
    save_pretrained,
)
from atrous.models.convert import registry
from atrous.models.convert.torchvision import from_torchvision
from atrous.models.spec import ModelSpec

NAME = "deeplabv3_resnet50.torchvision_coco_voc"


def test_list_weights_describes_each_entry():
    entries = {w.name: w for w in list_weights()}
    tv = entries[NAME]
    assert (
        tv.url.endswith("deeplabv3_resnet50_coco-cd0a2569.pth") and tv.sha256_prefix == "cd0a2569"
    )
    assert tv.classes[0] == "background" and len(tv.classes) == 21 and "66.4" in tv.reported
    assert tv.licence and tv.source and tv.spec.kwargs["output_stride"] == 8
    assert entries["deeplabv3plus_xception65.tf_voc_trainaug"].format == "tf"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A torchvision DeepLabv3 state dict served from a file:// URL with its true hash prefix."""
    torch.manual_seed(0)
    reference = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    ).eval()
    source = tmp_path / "served" / "deeplabv3_resnet50_coco-local.pth"
    source.parent.mkdir()
    torch.save(reference.state_dict(), source)
    prefix = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    entry = dataclasses.replace(registry.WEIGHTS[NAME], url=source.as_uri(), sha256_prefix=prefix)
    monkeypatch.setitem(registry.WEIGHTS, NAME, entry)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return reference, source


def test_download_convert_and_reuse_the_cache(served, monkeypatch):
    reference, _ = served
    model = from_weights(NAME)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = from_torchvision(reference).eval()
        expected.pad_input = True
        torch.testing.assert_close(model(x), expected(x))
    cached = Path(torch.hub.get_dir()) / "atrous" / "deeplabv3_resnet50_coco-local.pth"
    assert cached.is_file()

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    from_weights(NAME)  # from the cache


def test_hash_mismatch_and_offline_errors(served, tmp_path, monkeypatch):
    reference, source = served
    wrong = dataclasses.replace(registry.WEIGHTS[NAME], sha256_prefix="00000000")
    monkeypatch.setitem(registry.WEIGHTS, NAME, wrong)
    with pytest.raises(CheckpointError, match="does not match"):
        from_weights(NAME)
    offline = dataclasses.replace(wrong, url="file:///nowhere/deeplabv3_resnet50_coco-none.pth")
    monkeypatch.setitem(registry.WEIGHTS, NAME, offline)
    with pytest.raises(
        CheckpointError, match=r"could not download file:///nowhere.*weights_file_path="
    ):
        from_weights(NAME)
    # a file the user downloaded by hand is accepted (and checked)
    right = dataclasses.replace(
        offline, sha256_prefix=hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    )
    monkeypatch.setitem(registry.WEIGHTS, NAME, right)
    model = from_weights(NAME, weights_file_path=source)
    assert not model.training and model.output_stride == 8 and model.num_classes == 21
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = from_torchvision(reference).eval()
        expected.pad_input = True
        torch.testing.assert_close(model(x), expected(x))
    tf_name = "mobile_deeplabv3.tf_voc_trainaug"
    tf_offline = dataclasses.replace(registry.WEIGHTS[tf_name], url="file:///nowhere/mnv2.tar.gz")
    monkeypatch.setitem(registry.WEIGHTS, tf_name, tf_offline)
    with pytest.raises(CheckpointError, match=r"could not download file:///nowhere/mnv2.*"):
        from_weights(tf_name)
    with pytest.raises(CheckpointError, match="unknown weights"):
        from_weights("nope")


def _saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    spec = ModelSpec("deeplabv3plus", {"num_classes": 3, "width_mult": 0.25, "channels": 16})
    model = spec.build().eval()
    directory = save_pretrained(model, tmp_path / "mine", spec=spec, classes=["a", "b", "c"],
                                palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])  # fmt: skip
    return model, directory


def test_save_and_load_a_directory(tmp_path: Path):
    model, directory = _saved(tmp_path)
    loaded, config = from_pretrained(directory)
    assert config["classes"] == ["a", "b", "c"] and config["mean"] == [0.485, 0.456, 0.406]
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(CheckpointError, match="expected config.json"):
        from_pretrained(tmp_path)
    spec = ModelSpec.from_dict(config["model_spec"])
    again = save_pretrained(loaded, tmp_path / "again", spec=spec, classes=config["classes"])
    torch.testing.assert_close(from_pretrained(again)[0](x), model(x))


def test_load_from_a_pre_filled_hub_cache(tmp_path: Path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    model, directory = _saved(tmp_path)
    snapshot = tmp_path / "hf" / "hub" / "models--someone--demo" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((directory / name).read_bytes())
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded, config = from_pretrained("hf-hub:someone/demo")
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(loaded(x), model(x))
    assert config["model_spec"]["name"] == "deeplabv3plus" and config["classes"] == ["a", "b", "c"]


def test_predict_with_published_weights(served, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from atrous.cli import main

    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    out = tmp_path / "pred"
    assert (
        main(["predict", "--weights", NAME, str(image), "--out", str(out), "--device", "cpu"]) == 0
    )
    with Image.open(out / "photo.png") as png:
        assert png.size == (48, 40) and png.mode == "P"
    assert (
        main(["predict", str(image), "--out", str(out)]) == 2
    )  # neither --checkpoint nor --weights
    assert "--checkpoint or --weights" in capsys.readouterr().err


def test_published_weights_come_only_from_the_registry():
    """Builders take backbone_weights= only: a whole published model is from_weights(NAME)."""
    for builder in (deeplabv3, deeplabv3plus):
        with pytest.raises(TypeError, match="weights"):
            builder(weights=NAME)
    with pytest.raises(ConfigError, match=r"'weights'.*from_weights\(NAME\).*--weights NAME"):
        ModelSpec("deeplabv3", {"backbone": "resnet50", "weights": NAME})
    # The entry's spec is the network alone: building it downloads nothing.
    spec = registry.WEIGHTS[NAME].spec
    assert "weights" not in spec.kwargs and spec.without_downloads() == spec
    model = spec.build()
    assert model.output_stride == 8 and len(model.classifier) == 2  # torchvision's head
    # Checkpoints written while builders took weights= stored it as None; they still load.
    old = {"name": "deeplabv3", "kwargs": {**spec.to_dict()["kwargs"], "weights": None}}
    assert ModelSpec.from_dict(old) == spec
