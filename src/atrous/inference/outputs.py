"""Where predictions may be written: checked before any work, so that nothing is lost.

The rule (``atrous predict``): predictions go into an output folder that is not the folder of
any input image, and they replace no file there except the ones an earlier ``atrous predict``
wrote. Those are listed, with their size and modification time, in :data:`MANIFEST`
(``atrous_predictions.json``) in the output folder; a file the manifest does not list, or one
changed since, is never replaced: the run stops before it starts, naming the file.

Output names: each image's files are named by its stem (``photo.jpg`` -> ``photo.png``,
``photo_overlay.jpg``). When several inputs share a stem (``a/x.jpg``, ``a/x.png``, ``b/x.jpg``)
each of them is named by its path under the folder those inputs share, with ``/`` and the
suffix's dot written ``_`` (``a_x_jpg``, ``a_x_png``, ``b_x_jpg``); a name still taken gets
``_2``, ``_3``, ... So every image gets its own files and the count printed is the files made.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError

MANIFEST = "atrous_predictions.json"
"""The list of files ``atrous predict`` wrote into an output folder (JSON)."""


def _blocking_file(path: Path) -> Path | None:
    """The nearest of ``path``'s existing ancestors when it is not a folder."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_place(path: Path, what: str, kind: str) -> None:
    """No ancestor of ``path`` is a file, and the nearest existing one is writable."""
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ConfigError(f"{what} {path}: cannot be a {kind}, {blocker} is a file; give another")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not path.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {existing} is not writable; give another {kind}")


def check_output_dir(out_dir: str | Path, *, what: str = "--out") -> Path:
    """Check, before any work, that ``out_dir`` is or can become a writable folder: not a file,
    not under a file. Returns it as a ``Path``; raises ``ConfigError`` naming the problem."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{what} {out}: is a file, not a folder; give a folder to write into")
    _check_place(out, what, "folder")
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {out}: is not writable; give another folder")
    return out


def json_report_with(key: str) -> Callable[[Path], bool]:
    """For :func:`check_output_file`'s ``replaceable``: an existing file may be replaced when it
    is a JSON report atrous wrote, an object holding ``key``."""

    def replaceable(path: Path) -> bool:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and key in data

    return replaceable


def check_output_file(
    path: str | Path,
    *,
    what: str = "--out",
    replaceable: Callable[[Path], bool] | None = None,
) -> Path:
    """Check, before any work, that a file can be written at ``path``: not a folder, not under
    a file, in a writable place, and, if it exists, ``replaceable(path)`` (e.g. it is an
    earlier result of the same command; without ``replaceable`` any existing file may go).
    Returns it as a ``Path``; raises ``ConfigError`` naming the problem."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path}: is a folder; give a file name inside it")
    _check_place(path, what, "file")
    if path.exists() and replaceable is not None and not replaceable(path):
        raise ConfigError(
            f"{what} {path}: exists and is not a file this command wrote; give another "
            f"{what} or move it away"
        )
    return path


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


class Manifest:
    """The files ``atrous predict`` wrote into ``folder`` (:data:`MANIFEST`), with the size
    and modification time each had then, so that a later run may replace them and only them."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST
        self.files: dict[str, list[int]] = {}
        self._saved = 0.0
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                files = data["files"]
                if not isinstance(files, dict):
                    raise TypeError("files is not a mapping")
                self.files = {str(k): [int(v[0]), int(v[1])] for k, v in files.items()}
            except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
                raise ConfigError(
                    f"{self.path}: not a readable list of atrous predictions ({err}); "
                    "give another --out"
                ) from None

    def owns(self, path: Path) -> bool:
        """Whether ``path`` (in the folder) is a file a run wrote and nobody changed since."""
        entry = self.files.get(path.name)
        return entry is not None and path.is_file() and _stat(path) == entry

    def add(self, paths: Sequence[Path]) -> None:
        for path in paths:
            if path.is_file():
                self.files[path.name] = _stat(path)

    def save(self, *, every: float = 0.0) -> None:
        """Write the list (atomically), at most once per ``every`` seconds."""
        if every and time.monotonic() - self._saved < every:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{MANIFEST}.tmp")
        body = {"written_by": "atrous predict", "files": dict(sorted(self.files.items()))}
        temporary.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(temporary, self.path)
        self._saved = time.monotonic()


def output_files(
    stem: str,
    *,
    attention_scales: Sequence[float] = (),
    panoptic: bool = False,
    people: bool = False,
    instances: bool = False,
) -> list[str]:
    """The names one image's predictions get: mask, overlay, then attention, panoptic,
    people (a PersonLab model's picture and COCO results) and instances (a MaskLab model's)."""
    names = [f"{stem}.png", f"{stem}_overlay.jpg"]
    names += [f"{stem}_attention_{scale:.2f}.png" for scale in attention_scales]
    if panoptic:
        names += [f"{stem}_panoptic.png", f"{stem}_panoptic_overlay.jpg"]
    if people:
        names += [f"{stem}_people.jpg", f"{stem}_people.json"]
    if instances:
        names += [f"{stem}_instances.jpg", f"{stem}_instances.json"]
    return names


def output_stems(
    paths: Sequence[Path],
    *,
    attention_scales: Sequence[float] = (),
    panoptic: bool = False,
    people: bool = False,
    instances: bool = False,
) -> list[str]:
    """A stem per input such that no two inputs' files share a name (module docstring)."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.stem.casefold(), []).append(path)
    wanted: list[str] = []
    for path in paths:
        group = groups[path.stem.casefold()]
        if len(group) == 1:
            wanted.append(path.stem)
            continue
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in group]))
        relative = path.resolve().relative_to(root)
        wanted.append("_".join([*relative.parent.parts, relative.stem, path.suffix.lstrip(".")]))
    taken: set[str] = set()
    stems = []
    for stem in wanted:
        candidate, n = stem, 1
        while True:
            names = output_files(
                candidate, attention_scales=attention_scales, panoptic=panoptic, people=people,
                instances=instances,
            )  # fmt: skip
            if not any(name.casefold() in taken for name in names):
                break
            n += 1
            candidate = f"{stem}_{n}"
        taken.update(name.casefold() for name in names)
        stems.append(candidate)
    return stems


def plan_outputs(
    paths: Sequence[Path],
    out_dir: str | Path,
    *,
    attention_scales: Sequence[float] = (),
    panoptic: bool = False,
    people: bool = False,
    instances: bool = False,
) -> list[str]:
    """Check, before any work, that predicting ``paths`` into ``out_dir`` loses nothing (the
    rule of the module docstring) and return each input's output stem. Raises
    ``ConfigError`` naming the first file that would be replaced and how to avoid it."""
    out = check_output_dir(out_dir)
    resolved_out = out.resolve()
    inputs = {p.resolve() for p in paths}
    for path in paths:
        if path.resolve().parent == resolved_out:
            raise ConfigError(
                f"--out {out}: is the folder of the input image {path}; predictions would sit "
                f"among the images and could replace them; give another --out "
                f"(e.g. {out.name or 'out'}_predictions)"
            )
    layout = {
        "attention_scales": attention_scales, "panoptic": panoptic, "people": people,
        "instances": instances,
    }  # fmt: skip
    stems = output_stems(paths, **layout)  # type: ignore[arg-type]
    manifest = Manifest(out)
    for stem in stems:
        for name in output_files(stem, **layout):  # type: ignore[arg-type]
            target = out / name
            if target.resolve() in inputs:
                raise ConfigError(f"{target}: is an input image; give another --out")
            if (target.exists() or target.is_symlink()) and not manifest.owns(target):
                raise ConfigError(
                    f"{target}: exists and is not a prediction atrous wrote (it is not in "
                    f"{MANIFEST}, or changed since); give another --out or move the file away"
                )
    return stems
