"""What every command shares: exit statuses, ``--format``, ``--set``, output-path checks and
one way to print an error. Nothing here imports a deep-learning framework."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..atomic import unwritable
from ..diagnostics import printable, render_text
from ..pipeline import Result, validate

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

EXIT_STATUSES = (
    (EXIT_OK, "success: every spec valid, the command did what it says"),
    (EXIT_INVALID, ("errors in the input: a spec with errors, a model or run that is refused,\n"
                   "parity beyond tolerance, a demo below its accuracy, a write that fails midway")),
    (EXIT_USAGE, ("usage errors: a bad option, a missing file or package, an unknown or\n"
                 "uninstalled backend, an output that exists or cannot be written")),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    (EXIT_BROKEN_PIPE, "standard output closed early (`resnet-spec codes | head`)"),
)  # fmt: skip


def exit_status_text() -> str:
    rows = [f"  {code:<5d}" + text.replace("\n", "\n       ") for code, text in EXIT_STATUSES]
    return "exit status:\n" + "\n".join(rows)


class CommandError(Exception):
    """A one-line ``error: ...`` on standard error, then exit with ``status``."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


def fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    raise CommandError(message, status)


def print_error(message: str) -> None:
    print(f"error: {printable(message)}", file=sys.stderr)


def print_warning(message: str) -> None:
    print(f"warning: {printable(message)}", file=sys.stderr)




# -- options ------------------------------------------------------------------------------------

def add_format(parser: argparse.ArgumentParser, what: str = "the report") -> None:
    parser.add_argument(
        "--format", choices=("text", "json"), default="text",
        help=f"output format: text for people (default) or json for tools, one JSON document on standard output: {what}",
    )  # fmt: skip


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a value before validation (repeatable); missing mappings are created, list items "
             "are numbered from 0: --set stages.1.shortcut=projection --set defaults.norm.epsilon=1e-5",
    )  # fmt: skip


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="replace an existing output file (without it, an existing file is refused)")  # fmt: skip


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# -- specs --------------------------------------------------------------------------------------

def validated(path: str, overrides: Sequence[str]) -> Result:
    return validate("-" if path == "-" else Path(path), overrides=overrides)


def print_problems(result: Result, stream: Any = None) -> None:
    source = result.document.source.text if result.document else None
    name = result.document.source.file if result.document else None
    for block in render_text(result.report.sorted(), source):
        if name:  # a newline in the file name must not start a line of its own
            block = block.replace(name, printable(name))
        print(printable(block, keep_newlines=True), file=stream or sys.stderr)


def check_input(path: Path, what: str = "file") -> None:
    if not path.exists():
        fail(f"{path}: no such {what}")


def refuse_training_paths(path: Path) -> None:
    """A run directory or its checkpoint where a model file is expected: say to export it."""
    from ..exporting import training_path_hint

    hint = training_path_hint(path)
    if hint:
        fail(hint, EXIT_INVALID)


def check_output(path: Path, *, suffix: str | None = None, force: bool = False) -> None:
    """Refuse, before any work, an output that would be unusable or would replace something:
    a folder, a name without the suffix its loader recognises, an existing file without --force,
    a place that cannot be written (a missing or read-only folder, ``/proc``, a device)."""
    if path.is_dir():
        fail(f"{path} is a directory; give a file name, e.g. {path / ('model' + (suffix or ''))}")
    if suffix and not path.name.endswith(suffix):
        fail(f"{path}: this backend writes {suffix} files (`load` finds the backend by suffix); "
             f"name the output {path.with_name(path.name + suffix) if not path.suffix else path.with_suffix(suffix)}")
    problem = unwritable(path)
    if problem:
        fail(problem)
    if path.exists() and not force:
        fail(f"{path} already exists; choose another output or pass --force to replace it")

