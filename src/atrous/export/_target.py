"""Where an export may be written: never over a file that is not an earlier atrous export."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import ConfigError


def _is_atrous_export(path: Path) -> bool:
    """An ONNX file with atrous metadata, or a TorchScript / pt2 archive with
    ``metadata.json``."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        program = any("/code/" in name or name.endswith("archive_format") for name in names)
        return program and any(name.endswith("extra/metadata.json") for name in names)
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX (or no onnx package): not something atrous wrote
        return False
    return any(prop.key in ("atrous_export", "classes") for prop in proto.metadata_props)


def check_export_target(path: str | Path) -> Path:
    """Check, before exporting, that ``path`` is no folder, lies under no file, and replaces
    nothing but an earlier atrous export; raise ``ConfigError`` naming the problem."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; give a file name (e.g. {path}/model.onnx)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {path}: {parent} is a file; give another --out")
            break
    if path.exists() and not _is_atrous_export(path):
        raise ConfigError(
            f"--out {path}: exists and is not an atrous export (a checkpoint, or another "
            "file); give another --out or move it away"
        )
    return path
