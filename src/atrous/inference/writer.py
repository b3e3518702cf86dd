"""Writing predictions as files people use: palette PNGs of class ids and colour overlays.

:func:`predict_to_files` checks where it will write before any work (:mod:`.outputs`: never
into an input image's folder, never over a file it did not write, one name per image), then
finishes every image it can and lists the others with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import IMAGE_SUFFIXES
from ..data.info import DatasetInfo
from ..data.palette import heatmap, overlay, save_palette_png, voc_colormap
from ..errors import AtrousError, ConfigError, DataError
from ..tasks.panoptic_decode import predict_panoptic
from ..tasks.personlab_decode import decode
from .instances import save_instances
from .outputs import Manifest, output_files, plan_outputs
from .people import save_people
from .predictor import Predictor, WindowNotice, to_image_tensor

PER_IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    AtrousError,  # DataError from the readers, CheckpointError for NaN scores
    OSError,
    ValueError,
    MemoryError,
    Image.DecompressionBombError,
    torch.OutOfMemoryError,
)
"""What one image may raise without stopping a batch: it is listed in ``failed`` instead."""


def save_prediction(
    labels: np.ndarray | torch.Tensor,
    image: np.ndarray,
    out_dir: str | Path,
    stem: str,
    info: DatasetInfo | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (palette PNG whose pixel values are class ids) and
    ``<stem>_overlay.jpg`` (the image blended with the class colours); return both paths."""
    labels = np.asarray(labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = voc_colormap() if info is None else info.palette
    mask_path = save_palette_png(labels, palette, out_dir / f"{stem}.png")
    overlay_path = out_dir / f"{stem}_overlay.jpg"
    Image.fromarray(overlay(image, labels, palette)).save(overlay_path, quality=90)
    return mask_path, overlay_path


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (their .jpg/.jpeg/.png files) into a list of image paths, each
    once (a file named twice, or also through its folder, is predicted once)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{item}: folder holds no .jpg or .png images")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise DataError(f"{item}: no such image file or folder")
    seen: set[Path] = set()
    unique = []
    for path in paths:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


@dataclass
class WrittenFiles:
    """What :func:`predict_to_files` did: ``(mask, overlay)`` paths per image written,
    ``(image, reason)`` per image it could not read or predict, and ``(image, notice)`` per
    image it ran differently (e.g. in sliding windows, too large for memory). Iterates,
    indexes and counts like the written pairs."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notices: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[Path, Path]]:
        return iter(self.pairs)

    def __getitem__(self, index: int) -> tuple[Path, Path]:
        return self.pairs[index]


def save_attention(
    predictor: Predictor, image: torch.Tensor, out_dir: str | Path, stem: str
) -> list[Path]:
    """Write ``<stem>_attention_<scale>.png``: heatmaps of the weight each scale gets per pixel
    (attention to scale: which scale each object came from). The model must have
    ``attention_maps`` (:class:`~atrous.models.ScaleAttentionDeepLab`)."""
    model = predictor.model
    if not hasattr(model, "attention_maps"):
        raise ValueError(
            f"{type(model).__name__} has no attention maps (train with model.scale_attention)"
        )
    x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
    with torch.inference_mode():
        maps = model.attention_maps(x)[0].float().cpu().numpy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for scale, weights in zip(model.scales, maps, strict=True):
        path = out_dir / f"{stem}_attention_{scale:.2f}.png"
        Image.fromarray(heatmap(weights)).save(path)
        paths.append(path)
    return paths


def predict_to_files(
    predictor: Predictor,
    paths: Sequence[Path],
    out_dir: str | Path,
    *,
    progress: bool = True,
    attention: bool = False,
) -> WrittenFiles:
    """Predict each image file and write its palette PNG and overlay into ``out_dir`` (and,
    with ``attention``, its per-scale attention heatmaps, :func:`save_attention`; for a
    panoptic model its panoptic PNG and overlay; for a PersonLab model, one with
    ``num_keypoints``, its people picture and COCO results JSON, :func:`.people.save_people`;
    for a MaskLab model its instances, :func:`.instances.save_instances`).

    Before any work, :func:`.outputs.plan_outputs` checks that no input and no file this
    command did not write would be replaced (``ConfigError`` otherwise) and names each image's
    files uniquely; the files written are listed in ``out_dir/atrous_predictions.json``. An
    image that cannot be read or predicted (unreadable, a decompression bomb, out of memory,
    NaN scores) does not stop the others: it is listed in ``failed`` with the reason.
    """
    paths = list(paths)
    model = predictor.model
    if attention and not hasattr(model, "attention_maps"):
        raise ConfigError(
            f"{type(model).__name__} has no attention maps (train with model.scale_attention)"
        )
    layout = {
        "attention_scales": tuple(model.scales) if attention else (),
        "panoptic": hasattr(model, "forward_panoptic"),
        "people": hasattr(model, "num_keypoints"),  # PersonLab: skeletons, masks, COCO JSON
        "instances": hasattr(model, "segment_boxes"),  # MaskLab: instances and their JSON
    }
    stems = plan_outputs(paths, out_dir, **layout)  # type: ignore[arg-type]
    out = Path(out_dir)
    manifest = Manifest(out)
    result = WrittenFiles()
    try:
        for path, stem in tqdm(
            list(zip(paths, stems, strict=True)), desc="predict", unit="img", disable=not progress
        ):
            try:
                result.pairs.append(
                    _predict_one(predictor, path, out, stem, attention, result, progress)
                )
            except PER_IMAGE_ERRORS as err:
                result.failed.append((path, _reason(err, path)))
            except RuntimeError as err:  # torch's CPU allocator: "can't allocate memory"
                if "alloc" not in str(err) and "memory" not in str(err):
                    raise
                result.failed.append((path, _reason(err, path)))
            finally:
                manifest.add([out / name for name in output_files(stem, **layout)])  # type: ignore[arg-type]
                manifest.save(every=1.0)
    finally:
        manifest.save()
    return result


def _reason(err: BaseException, path: Path) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (MemoryError, torch.OutOfMemoryError, RuntimeError)):
        text = f"out of memory ({text}); try --crop 513 (sliding windows)"
    return text.removeprefix(f"{path}: ")


def _predict_one(
    predictor: Predictor,
    path: Path,
    out: Path,
    stem: str,
    attention: bool,
    result: WrittenFiles,
    progress: bool,
) -> tuple[Path, Path]:
    """Read, predict and write one image; notices (e.g. sliding windows) go to ``result``."""
    image = to_image_tensor(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", WindowNotice)
        labels = predictor.predict(image, finite=True)
    for warning in caught:
        if issubclass(warning.category, WindowNotice):
            result.notices.append((path, str(warning.message)))
            if progress:
                tqdm.write(f"{path}: {warning.message}")
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    array = image.permute(1, 2, 0).numpy()
    pair = save_prediction(labels, array, out, stem, predictor.info)
    if attention:
        save_attention(predictor, image, out, stem)
    if hasattr(predictor.model, "forward_panoptic"):  # panoptic models: ids and outlines
        x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
        pan = predict_panoptic(predictor.model, x)[0].cpu().numpy()
        save_panoptic(pan, array, out, stem, predictor.info)
    if hasattr(predictor.model, "num_keypoints"):  # PersonLab: people, drawn and as COCO JSON
        save_people(predict_people(predictor, image), array, out, stem, image_name=path.name)
    if hasattr(predictor.model, "segment_boxes"):  # MaskLab: instances, drawn and as JSON
        classes = predictor.info.classes if predictor.info is not None else ()
        names = [
            *classes,
            *(f"class {i}" for i in range(len(classes), predictor.model.num_classes)),
        ]
        save_instances(array, predict_instances(predictor, image), out, stem, names)
    return pair


def predict_instances(predictor: Predictor, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """One image's detected instances (``boxes``, ``labels``, ``scores``, ``masks`` as
    probabilities at the image's size) from a MaskLab predictor's model, whole image."""
    x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
    with torch.no_grad():
        found = predictor.model(x)["detections"][0]
    return {key: value.cpu() for key, value in found.items()}


def predict_people(predictor: Predictor, image: torch.Tensor) -> list[dict[str, Any]]:
    """One image's people from a PersonLab predictor's model: its fields at the image's size,
    decoded (:func:`atrous.tasks.personlab_decode.decode`), highest score first. Runs the
    model itself (eval mode, as the predictor holds it), whole image, single scale."""
    model = predictor.model
    x = predictor.normalize(image).unsqueeze(0).to(predictor.device)
    with torch.no_grad():
        fields = model(x)
    one = {name: value[0].float().cpu() for name, value in fields.items()}
    return decode(one, radius=float(getattr(model, "radius", 32.0)))


def panoptic_overlay(
    image: np.ndarray, panoptic: np.ndarray, palette: np.ndarray, label_divisor: int = 1000
) -> np.ndarray:
    """The image blended with each segment's class colour (instances of one class shaded
    apart) and a white outline around every segment."""
    classes = panoptic // label_divisor
    instances = panoptic % label_divisor
    colours = np.asarray(palette, dtype=np.float64)[np.clip(classes, 0, len(palette) - 1)]
    shade = 1.0 - 0.25 * ((instances % 4) / 3.0)  # neighbouring instances differ in brightness
    colours = colours * shade[..., None]
    blended = 0.5 * image.astype(np.float64) + 0.5 * colours
    void = classes == 255
    blended[void] = image[void]
    edge = np.zeros(panoptic.shape, dtype=bool)
    edge[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
    edge[1:, :] |= panoptic[1:, :] != panoptic[:-1, :]
    blended[edge] = 255
    return blended.round().clip(0, 255).astype(np.uint8)


def save_panoptic(
    panoptic: np.ndarray | torch.Tensor,
    image: np.ndarray,
    out_dir: str | Path,
    stem: str,
    info: DatasetInfo | None = None,
    label_divisor: int = 1000,
) -> tuple[Path, Path]:
    """Write ``<stem>_panoptic.png`` (the ids ``class * label_divisor + instance`` encoded as
    R + 256 G + 256^2 B, as COCO panoptic PNGs are) and ``<stem>_panoptic_overlay.jpg``."""
    ids = np.asarray(panoptic, dtype=np.int64)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    png = out_dir / f"{stem}_panoptic.png"
    Image.fromarray(rgb).save(png)
    palette = voc_colormap() if info is None else info.palette
    jpg = out_dir / f"{stem}_panoptic_overlay.jpg"
    Image.fromarray(panoptic_overlay(image, ids, palette, label_divisor)).save(jpg, quality=90)
    return png, jpg
