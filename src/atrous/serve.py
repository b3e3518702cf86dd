"""``atrous serve``: a web demo (Gradio, extra ``atrous[serve]``) of a checkpoint, published
weights or an exported ONNX file: upload an image or pick a bundled example, choose scales,
flip and the dense CRF, and see the overlay with a legend of the classes present, a per-class
area table and the class-id PNG to download.

Bad uploads (empty, not an image, over :data:`MAX_UPLOAD_PIXELS`) are answered with one clear
message (:func:`check_upload`), checked before the image is decoded. Files: the class-id PNGs
live in one temporary folder per app (:class:`Segmenter`, the last 16 kept); Gradio's own cache
of uploads and results is emptied of files older than an hour, every half hour
(:data:`DELETE_CACHE`).
"""

from __future__ import annotations

import collections
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .data.palette import overlay, save_palette_png, voc_colormap
from .errors import AtrousError, ConfigError
from .inference import Predictor
from .refine import dense_crf

EXAMPLES = Path(__file__).parent / "serve_examples"
MAX_SIDE = 1024  # larger uploads are resized (with a notice) so a CPU answers in seconds
MAX_UPLOAD_PIXELS = 40_000_000  # larger uploads are refused before they are decoded
DELETE_CACHE = (1800, 3600)  # gr.Blocks(delete_cache=): every 30 min, files older than 1 h
SCALES = {
    "1.0": (1.0,),
    "0.75, 1.0, 1.25": (0.75, 1.0, 1.25),
    "0.5 ... 1.75": (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
}


def load_predictor(source: str, *, device: str = "cpu") -> Predictor:
    """A predictor for ``source``: an atrous checkpoint, an exported file (.onnx / TorchScript)
    or the name of published weights (``atrous.models.list_weights``); CPU fast path for
    checkpoints and weights. A missing or foreign file is one clear error."""
    from .loader import load, load_weights
    from .models import WEIGHTS

    if source in WEIGHTS:
        return Predictor.from_loaded(load_weights(source), device=device, fast=True)
    path = Path(source)
    if not path.is_file():
        raise AtrousError(f"{path}: no such checkpoint or exported file (or weights name)")
    try:
        loaded = load(path)
    except ImportError as err:  # an .onnx file without onnxruntime
        raise ConfigError(f"{path}: {err}") from None
    fast = not loaded.is_exported and loaded.spec is not None  # exports run as they are
    return Predictor.from_loaded(loaded, device=device, fast=fast)


def check_upload(path: str | Path) -> None:
    """Raise ``ValueError`` with one clear message if the uploaded file at ``path`` is empty,
    not an image Pillow reads, or over :data:`MAX_UPLOAD_PIXELS` (read from its header, before
    any decoding)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError("the upload is empty (0 bytes); upload a PNG or JPEG image")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        too_large = "the image is far too large (a decompression bomb?); upload a smaller one"
        raise ValueError(too_large) from None
    except (OSError, ValueError, SyntaxError):
        not_image = "the upload is not an image this demo reads; upload a PNG or JPEG"
        raise ValueError(not_image) from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise ValueError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels); this demo "
            f"takes at most {MAX_UPLOAD_PIXELS / 1e6:.0f}: downscale it first"
        )


def _checked_upload(gr: Any, image: Any) -> Any:
    """Make ``image`` (a ``gr.Image``) answer bad uploads with one ``gr.Error``
    (:func:`check_upload`) instead of Gradio's generic error. Its ``preprocess`` is wrapped on
    the instance: subclassing a Gradio component would make Gradio write a ``.pyi`` file next
    to this module."""
    decode = image.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            if payload is not None and getattr(payload, "path", None):
                check_upload(payload.path)
            return decode(payload)
        except gr.Error:
            raise
        except Exception as err:  # Gradio's decoding: PIL and numpy errors
            message = str(err) if isinstance(err, ValueError) else type(err).__name__
            raise gr.Error(message or "the upload could not be read as an image") from None

    image.preprocess = preprocess
    return image


def _legend(
    labels: np.ndarray, classes: Sequence[str], palette: np.ndarray
) -> tuple[str, list[list[Any]]]:
    """HTML swatches of the classes present, and rows (class, pixels, share %) by area."""
    counts = np.bincount(labels.reshape(-1), minlength=len(classes))
    total = max(1, int(counts.sum()))
    order = [int(c) for c in np.argsort(-counts) if counts[c] > 0]
    swatches = " ".join(
        f'<span style="display:inline-block;margin:2px 8px 2px 0"><span style="display:inline-'
        f"block;width:14px;height:14px;background:rgb{tuple(int(v) for v in palette[c])};"
        f'vertical-align:middle;border:1px solid #444"></span> {classes[c]}</span>'
        for c in order
    )
    rows = [[classes[c], int(counts[c]), round(100 * counts[c] / total, 2)] for c in order]
    return f"<div class='legend'>{swatches}</div>", rows


class Segmenter:
    """What a served model keeps between requests: a predictor per (scales, flip, CRF) choice,
    made once, and one temporary folder for the class-id PNGs offered for download, holding the
    last :attr:`KEEP` of them and removed when the segmenter is (or the process ends)."""

    KEEP = 16

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self._variants: dict[tuple[tuple[float, ...], bool, bool], Predictor] = {}
        self._folder = tempfile.TemporaryDirectory(prefix="atrous-serve-")
        self._written: collections.deque[Path] = collections.deque()
        self._count = 0

    def variant(self, scales: tuple[float, ...], flip: bool, crf: bool) -> Predictor:
        """The predictor with these options (made on first use)."""
        key = (scales, flip, crf)
        if key not in self._variants:
            if scales == (1.0,) and not flip and not crf:
                self._variants[key] = self.predictor
            else:
                variant = self.predictor.with_options(scales=scales, flip=flip)
                variant.refine = dense_crf if crf else None
                self._variants[key] = variant
        return self._variants[key]

    def png_path(self) -> Path:
        """A fresh file name in the folder; the oldest beyond :attr:`KEEP` is deleted."""
        self._count += 1
        path = Path(self._folder.name) / f"labels_{self._count:06d}.png"
        self._written.append(path)
        while len(self._written) > self.KEEP:
            self._written.popleft().unlink(missing_ok=True)
        return path

    def close(self) -> None:
        self._folder.cleanup()


_SEGMENTERS: weakref.WeakKeyDictionary[Predictor, Segmenter] = weakref.WeakKeyDictionary()


def _segmenter(predictor: Predictor) -> Segmenter:
    """The segmenter kept for a bare predictor (alive, with its files, as long as it is)."""
    if predictor not in _SEGMENTERS:
        _SEGMENTERS[predictor] = Segmenter(predictor)
    return _SEGMENTERS[predictor]


def segment(
    predictor: Predictor | Segmenter,
    image: np.ndarray | None,
    scales: str,
    flip: bool,
    crf: bool,
) -> tuple[np.ndarray, str, list[list[Any]], str, str]:
    """One request: (overlay, legend HTML, area rows, class-id PNG path, notice)."""
    segmenter = predictor if isinstance(predictor, Segmenter) else _segmenter(predictor)
    if image is None:
        raise ValueError("upload an image (PNG or JPEG) first")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"not an RGB image (shape {array.shape})")
    array = np.ascontiguousarray(array[..., :3].astype(np.uint8))
    notice = ""
    h, w = array.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        array = np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))
        notice = (
            f"the image ({w}x{h}) was resized to {size[0]}x{size[1]} (at most {MAX_SIDE} px a side)"
        )
    runner = segmenter.variant(SCALES.get(scales, (1.0,)), bool(flip), bool(crf))
    labels = runner.predict(array).numpy()
    info = segmenter.predictor.info
    classes = info.classes if info else tuple(f"class_{i}" for i in range(int(labels.max()) + 1))
    palette = info.palette if info else voc_colormap()
    legend, rows = _legend(labels, classes, palette)
    png = save_palette_png(labels, palette, segmenter.png_path())
    return overlay(array, labels, palette), legend, rows, str(png), notice


def build_app(predictor: Predictor, *, title: str = "atrous: DeepLab segmentation") -> Any:
    """The Gradio Blocks app around ``predictor`` (its ``/segment`` endpoint is the API)."""
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError("atrous serve needs: pip install 'atrous[serve]'") from err

    segmenter = Segmenter(predictor)

    def run(image: Any, scales: str, flip: bool, crf: bool) -> tuple[Any, ...]:
        try:
            return segment(segmenter, image, scales, flip, crf)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        except MemoryError:
            raise gr.Error("out of memory for this image; try a smaller one") from None

    examples = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
    with gr.Blocks(title=title, delete_cache=DELETE_CACHE) as app:
        gr.Markdown(f"# {title}\nUpload an image or pick an example; the overlay shows each "
                    "pixel's class. Multi-scale and flip average the softmax (DeepLabv3's "
                    "evaluation); the dense CRF sharpens boundaries (DeepLab v1/v2).")  # fmt: skip
        with gr.Row():
            with gr.Column():
                image = _checked_upload(
                    gr, gr.Image(type="numpy", label="image", elem_id="input-image")
                )
                scales = gr.Dropdown(list(SCALES), value="1.0", label="scales")
                flip = gr.Checkbox(label="left-right flip")
                crf = gr.Checkbox(label="dense CRF")
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                if examples:
                    gr.Examples(examples, inputs=image)
            with gr.Column():
                result = gr.Image(type="numpy", label="overlay", elem_id="overlay")
                notice = gr.Markdown(elem_id="notice")
                legend = gr.HTML(elem_id="legend")
                table = gr.Dataframe(headers=["class", "pixels", "share %"], label="area by class")
                download = gr.File(label="class ids (palette PNG)")
        outputs = [result, legend, table, download, notice]
        button.click(run, inputs=[image, scales, flip, crf], outputs=outputs, api_name="segment")
    return app


def serve(source: str, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Load ``source`` and serve the app on ``host:port`` (loopback by default)."""
    app = build_app(load_predictor(source))
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True)
    return app
