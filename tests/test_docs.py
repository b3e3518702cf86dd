"""README.md and docs/ stay true: every ``atrous ...`` command line in their shell blocks parses
with today's CLI, and every ``atrous`` import in their Python blocks imports."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from atrous.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _blocks(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (page.name, body)
        for page in PAGES
        for kind, body in BLOCK.findall(page.read_text())
        if kind in kinds
    ]


def _commands() -> list[tuple[str, str]]:
    found = []
    for page, body in _blocks(("bash", "sh", "shell", "console", "")):
        text = body.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.strip().removeprefix("$ ")
            synopsis = " ... " in f"{line} " or "[--" in line  # a usage line, not a command
            if line.startswith("atrous ") and not synopsis:
                found.append((page, line.split(" #")[0].strip()))
    return found


def _imports() -> list[tuple[str, str]]:
    found = []
    for page, body in _blocks(("python", "py")):
        text = re.sub(r"\(\s*\n(.*?)\)", lambda m: "(" + " ".join(m.group(1).split()) + ")",
                      body, flags=re.S)  # fmt: skip
        for line in text.splitlines():
            if re.match(r"(from atrous[\w.]* import |import atrous)", line):
                found.append((page, line.split(" #")[0].strip()))
    return found


def test_the_pages_hold_commands_and_imports():
    assert len(_commands()) >= 20 and len(_imports()) >= 5


@pytest.mark.parametrize("page, line", _commands())
def test_every_documented_command_parses(page: str, line: str):
    argv = shlex.split(line)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: `{line}` does not parse with today's CLI")
    assert callable(args.func)


@pytest.mark.parametrize("page, line", _imports())
def test_every_documented_import_imports(page: str, line: str):
    exec(line, {})  # noqa: S102 - the documented line itself
