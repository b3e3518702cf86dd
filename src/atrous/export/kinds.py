"""What a file is, from its first bytes (and its suffix where the bytes cannot tell): one of
the model files atrous writes, or a plain description of a foreign one.

Every command that reads a model asks :func:`file_kind` first, so ``atrous eval --checkpoint
model.onnx`` runs the ONNX file and ``--checkpoint photo.png`` says "is a PNG image, not a
model" instead of "corrupt checkpoint".
"""

from __future__ import annotations

import zipfile
from pathlib import Path

CHECKPOINT, ONNX, TORCHSCRIPT, PT2 = "checkpoint", "onnx", "torchscript", "pt2"
MODEL_KINDS = (CHECKPOINT, ONNX, TORCHSCRIPT, PT2)
DESCRIPTIONS = {
    CHECKPOINT: "an atrous checkpoint",
    ONNX: "an ONNX model (atrous export --format onnx)",
    TORCHSCRIPT: "a TorchScript archive (atrous export --format torchscript)",
    PT2: "a torch.export program (atrous export --format pt2)",
}

# (magic bytes at offset 0, what the file is): formats a user may pass by mistake
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras / h5)"),
    (b"\x7fELF", "an executable"),
)
# protobuf field tags that follow ModelProto.ir_version (field 1) in an ONNX file
_ONNX_NEXT = frozenset({0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x72})


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "a damaged zip archive"
    if any(name.endswith("/archive_format") or name == "archive_format" for name in names):
        return PT2
    if any("/code/" in name for name in names):
        return TORCHSCRIPT
    if any(name.endswith("data.pkl") for name in names):
        return CHECKPOINT  # torch.save's zip format; load_checkpoint checks its marker
    return "a zip archive that is no PyTorch file"


def _looks_like_onnx(head: bytes) -> bool:
    """ONNX ``ModelProto`` starts with ``ir_version`` (tag 0x08, a small varint) followed by
    another of its fields (producer, graph, opset import, ...)."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in _ONNX_NEXT


def _describe_other(path: Path, head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file (weights without a model; atrous.models.from_pretrained)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if text.lstrip().startswith(("{", "[")):
        return "a JSON text file"
    printable = all(char.isprintable() or char in "\t\n\r" for char in text)
    return "a text file" if printable else ""


def file_kind(path: str | Path) -> str:
    """``"checkpoint"``, ``"onnx"``, ``"torchscript"`` or ``"pt2"`` for the files atrous
    reads as models, else a phrase saying what the file is (``"a PNG image"``, ``"an empty
    file"``, ...; ``""`` when nothing is recognised: the checkpoint reader then says why it
    cannot read it). Decided by content; the ``.onnx`` suffix decides for protobuf files the
    bytes alone do not identify."""
    path = Path(path)
    with open(path, "rb") as file:
        head = file.read(512)
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return CHECKPOINT  # torch.save's legacy (pickle) format
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return ONNX
    return _describe_other(path, head)


def describe(kind: str) -> str:
    """``kind`` from :func:`file_kind` as words (``"an ONNX model (atrous export ...)"``)."""
    return DESCRIPTIONS.get(kind, kind)
