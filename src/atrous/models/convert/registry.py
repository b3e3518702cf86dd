"""Published weights by name, and sharing trained models the way timm / smp users do.

:func:`list_weights` lists the registry: each entry names its file (URL and sha256 prefix), the
architecture it fills (a :class:`~atrous.models.ModelSpec`), its preprocessing, classes, the
reported result with its source, and the licence. :func:`from_weights` downloads a file once
into the torch hub cache (``torch.hub.get_dir()/atrous``), checks its hash, converts it and
returns the model. Without a network the error names the URL and how to pass a downloaded file.

:func:`save_pretrained` / :func:`from_pretrained` write and read a directory (``config.json`` with
the model spec, classes, palette and preprocessing; ``model.safetensors``); ``"hf-hub:owner/name"``
reads one from the Hugging Face Hub (extra ``atrous[hub]``), :func:`push_to_hub` uploads one.
``save_pretrained`` also writes a model card (``README.md``, :mod:`.card`) in the Hub's
conventions, with the results :func:`~.card.metrics_from_run` reads from a training run.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ...errors import CheckpointError
from ..spec import ModelSpec
from .card import card_settings, write_card
from .tf import convert_tf_checkpoint
from .torchvision import from_torchvision

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class Weights:
    """One published set of weights (see the module docstring)."""

    name: str
    url: str
    sha256_prefix: str
    spec: ModelSpec
    classes: tuple[str, ...]
    reported: str
    source: str
    licence: str
    format: str = "torchvision"  # how the file converts: "torchvision" state dict, "tf" checkpoint
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, Any] = field(default_factory=dict)


def _torchvision(backbone: str, prefix: str, miou: float) -> Weights:
    return Weights(
        name=f"deeplabv3_{backbone}.torchvision_coco_voc",
        url=f"https://download.pytorch.org/models/deeplabv3_{backbone}_coco-{prefix}.pth",
        sha256_prefix=prefix,
        spec=ModelSpec(
            "deeplabv3",
            {"backbone": backbone, "num_classes": 21, "output_stride": 8, "torchvision_head": True},
        ),  # fmt: skip
        classes=VOC_CLASSES,
        reported=f"{miou} mIoU, COCO val2017 images with the 20 VOC classes (OS8, single scale)",
        source="torchvision.models.segmentation.DeepLabV3_ResNet*_Weights.COCO_WITH_VOC_LABELS_V1",
        licence="BSD-3-Clause (torchvision)",
    )


def _tf(
    name: str, url: str, variant: str, spec: ModelSpec, classes: tuple[str, ...], reported: str
) -> Weights:
    """A TF zoo tarball; ``spec`` is what :func:`~.tf.from_tf_checkpoint` builds for it
    (TF-compatible mode). No hash: the zoo publishes none (the first download is trusted)."""
    return Weights(name=name, url=url, sha256_prefix="", spec=spec, classes=classes,
                   reported=reported, source="TF DeepLab model zoo (tensorflow/models, "
                   "research/deeplab/g3doc/model_zoo.md)", licence="Apache-2.0", format="tf",
                   mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                   extra={"variant": variant})  # fmt: skip


_TF_MODE = {"output_stride": 16, "align_corners": True, "tf_compat": True}


WEIGHTS: dict[str, Weights] = {
    w.name: w
    for w in (
        _torchvision("resnet50", "cd0a2569", 66.4),
        _torchvision("resnet101", "586e9e4e", 67.4),
        _tf(
            "deeplabv3plus_xception65.tf_voc_trainaug",
            "http://download.tensorflow.org/models/deeplabv3_pascal_train_aug_2018_01_04.tar.gz",
            "xception_65",
            ModelSpec(
                "deeplabv3plus",
                {
                    "backbone": "xception65",
                    "num_classes": 21,
                    "atrous_rates": (6, 12, 18),
                    "separable": True,
                    **_TF_MODE,
                },
            ),  # fmt: skip
            VOC_CLASSES,
            "82.20 mIoU VOC val (OS16, single scale); 83.58 at OS8 + multi-scale + flip",
        ),
        _tf(
            "mobile_deeplabv3.tf_voc_trainaug",
            "http://download.tensorflow.org/models/deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
            "mobilenet_v2",
            ModelSpec(
                "deeplabv3",
                {"backbone": "mobilenetv2", "num_classes": 21, "atrous_rates": (), **_TF_MODE},
            ),
            VOC_CLASSES,
            "75.32 mIoU VOC val (OS16, single scale)",
        ),
    )
}
"""The registry: torchvision's COCO-trained DeepLabv3 and TF zoo checkpoints (converted with
the extra ``atrous[tf]``)."""


def list_weights() -> list[Weights]:
    """Every registered set of weights, by name."""
    return [WEIGHTS[name] for name in sorted(WEIGHTS)]


def _cache() -> Path:
    return Path(torch.hub.get_dir()) / "atrous"


def weights_file(name: str, file: str | Path | None = None) -> Path:
    """The local file of weights ``name``: ``file`` if given (its hash checked), else the cached
    download (fetched once)."""
    entry = _entry(name)
    path = Path(file) if file is not None else _cache() / Path(entry.url).name
    if file is None and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(entry.url, str(path), progress=True)
        except (urllib.error.URLError, OSError) as err:
            raise CheckpointError(
                f"could not download {entry.url} ({err}); download it yourself and pass "
                f"weights_file_path='path/to/{path.name}' (or put it at {path})"
            ) from None
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]}... does not match {entry.name}'s {entry.sha256_prefix} "
            "(a corrupt or different file; delete it to download again)"
        )
    return path


def _entry(name: str) -> Weights:
    if name not in WEIGHTS:
        raise CheckpointError(f"unknown weights {name!r}; available: {', '.join(sorted(WEIGHTS))}")
    return WEIGHTS[name]


def from_weights(name: str, *, weights_file_path: str | Path | None = None) -> nn.Module:
    """The model of weights ``name`` with those weights (downloaded and converted once)."""
    entry = _entry(name)
    if entry.format == "tf":
        return _from_tf(entry, weights_file_path)
    path = weights_file(name, weights_file_path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    backbone = entry.spec.kwargs["backbone"]
    builder = getattr(torchvision.models.segmentation, f"deeplabv3_{backbone}")
    reference = builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    reference.load_state_dict(state)
    model = entry.spec.build()
    model.load_state_dict(from_torchvision(reference).state_dict())
    return model.eval()


def _from_tf(entry: Weights, file: str | Path | None) -> nn.Module:
    """A TF zoo tarball, converted once (extra ``atrous[tf]``) into ``<cache>/<name>.pt``."""
    converted = _cache() / f"{entry.name}.pt"
    if file is not None or not converted.is_file():
        path = weights_file(entry.name, file)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError) as err:
                raise CheckpointError(f"{path}: not a readable tar archive ({err})") from None
            found = sorted(Path(tmp).rglob("*.index"))
            if not found:
                raise CheckpointError(f"{path}: no TF checkpoint (*.index) in the archive")
            spec, state = convert_tf_checkpoint(
                found[0], variant=entry.extra["variant"], num_classes=len(entry.classes)
            )
        converted.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_spec": spec.to_dict(), "model": state}, converted)
    saved = torch.load(converted, map_location="cpu", weights_only=True)
    model = ModelSpec.from_dict(saved["model_spec"]).build()
    model.load_state_dict(saved["model"])
    return model.eval()


CONFIG = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    *,
    spec: ModelSpec,
    classes: tuple[str, ...] | list[str],
    palette: Any = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    metrics: Mapping[str, Any] | None = None,
    protocol: Mapping[str, Any] | None = None,
    license: str = "apache-2.0",
    datasets: Sequence[str] | str | None = None,
    tags: Sequence[str] | str | None = None,
    card: bool = True,
) -> Path:
    """Write ``model`` to ``directory``: ``config.json`` (the spec, classes, palette,
    preprocessing), ``model.safetensors`` and, with ``card``, a model card ``README.md``
    (:mod:`.card`: the Hub's front matter with ``library_name: atrous``, ``pipeline_tag:
    image-segmentation``, ``license``, ``datasets``, ``tags`` and the results as a
    ``model-index``; what the model is, its results, preprocessing and a usage snippet).

    ``metrics`` are fractions as atrous's evaluators write them (``{"miou": 0.78, "pq": ...}``,
    or a whole ``metrics.json``); ``protocol`` says how they were measured (``split``,
    ``output_stride`` (default the model's), ``scales`` (default ``[1.0]``), ``flip`` (default
    False), ``step``, ``dataset``). :func:`~.card.metrics_from_run` reads both from a training
    run: ``save_pretrained(model, dir, spec=..., classes=..., **metrics_from_run(out_dir))``.
    The front matter is written by ``huggingface_hub`` when installed, else with the same keys
    by pyyaml. A ``README.md`` that atrous did not write is kept."""
    from safetensors.torch import save_file

    settings = card_settings(
        metrics=metrics, protocol=protocol, license=license, datasets=datasets, tags=tags,
        output_stride=_output_stride(model, spec),
    )  # fmt: skip
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": "atrous-pretrained/1",
        "model_spec": spec.without_downloads().to_dict(),
        "classes": list(classes),
        "palette": None if palette is None else [list(map(int, c)) for c in palette],
        "mean": list(mean),
        "std": list(std),
        "card": settings,
    }
    (directory / CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    if card:
        write_card(directory, config, source=str(directory))
    return directory


def _output_stride(model: nn.Module, spec: ModelSpec) -> int | None:
    """The output stride ``model`` runs at (its attribute, else the spec's)."""
    value = getattr(model, "output_stride", None) or spec.kwargs.get("output_stride")
    return int(value) if isinstance(value, int) else None


def from_pretrained(source: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A model saved by :func:`save_pretrained`, from a directory or ``"hf-hub:owner/name"``
    (downloaded by ``huggingface_hub`` into its cache; ``HF_HUB_OFFLINE=1`` reads the cache
    alone). Returns the model (eval mode) and its config."""
    from safetensors.torch import load_file

    text = str(source)
    if text.startswith("hf-hub:"):
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as err:
            raise ImportError("hf-hub models need: pip install 'atrous[hub]'") from err
        repo = text.removeprefix("hf-hub:")
        config_path = Path(hf_hub_download(repo, CONFIG))
        weights_path = Path(hf_hub_download(repo, WEIGHTS_FILE))
    else:
        config_path, weights_path = Path(source) / CONFIG, Path(source) / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{source}: expected {CONFIG} and {WEIGHTS_FILE}")
    config = json.loads(config_path.read_text())
    if config.get("format") != "atrous-pretrained/1":
        raise CheckpointError(f"{config_path}: not an atrous pretrained config")
    model = ModelSpec.from_dict(config["model_spec"]).build()
    model.load_state_dict(load_file(str(weights_path)))
    return model.eval(), config


def push_to_hub(directory: str | Path, repo_id: str, *, card: bool = True, **options: Any) -> str:
    """Upload a :func:`save_pretrained` directory to the Hugging Face Hub (extra ``atrous[hub]``;
    ``options`` go to ``huggingface_hub.upload_folder``, e.g. ``token``). With ``card``, the
    directory's model card is written first (its usage snippet loading
    ``"hf-hub:<repo_id>"``), unless it holds a ``README.md`` that atrous did not write."""
    try:
        from huggingface_hub import create_repo, upload_folder
    except ImportError as err:
        raise ImportError("pushing to the hub needs: pip install 'atrous[hub]'") from err
    config_path = Path(directory) / CONFIG
    if card and config_path.is_file():
        write_card(directory, json.loads(config_path.read_text()), source=f"hf-hub:{repo_id}")
    create_repo(repo_id, exist_ok=True, token=options.get("token"))
    upload_folder(repo_id=repo_id, folder_path=str(directory), **options)
    return f"hf-hub:{repo_id}"
