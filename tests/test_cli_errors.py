"""The command line's error rules: bad input is one line (exit 2), an unexpected error is one
line with its kind (exit 1), ``--debug`` shows the traceback, ``--max-image-pixels`` sets
Pillow's bomb limit the readers enforce."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from atrous import cli
from atrous.errors import ConfigError


def test_bad_input_is_one_line_and_debug_shows_the_traceback(tmp_path: Path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli.main(["train", "--config", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"atrous train: error: {missing}")
    with pytest.raises(ConfigError):
        cli.main(["--debug", "train", "--config", str(missing)])


def test_an_unexpected_error_is_one_line_with_its_kind(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside\nand more")

    monkeypatch.setitem(cli.HANDLERS, "export", broken)
    assert cli.main(["export", "--checkpoint", "c.pt", "--out", "m.onnx"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "atrous export: error: RuntimeError: something inside "
        "(atrous --debug export ... shows the traceback)"
    ]
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "export", "--checkpoint", "c.pt", "--out", "m.onnx"])


def test_max_image_pixels_sets_the_limit_the_readers_enforce(tiny_data: Path, capsys):
    before = Image.MAX_IMAGE_PIXELS
    try:
        code = cli.main(["--max-image-pixels", "100", "data", "check", "--root", str(tiny_data)])
        assert code == 1 and "decompression-bomb limit" in capsys.readouterr().out
        assert cli.main(["--max-image-pixels", "0", "data", "check", "--root", str(tiny_data)]) == 0
        assert Image.MAX_IMAGE_PIXELS is None
    finally:
        Image.MAX_IMAGE_PIXELS = before
