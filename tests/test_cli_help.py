"""The command line documents itself: every option of every command has help text, every
command an epilog with examples and the exit-status table, and the README lists the same
commands and exit statuses."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_spec.cli import build_parser, command_modules

COMMANDS = [module.NAME for module in command_modules()]  # command names (import-weights lives in import_weights)
from resnet_spec.cli.common import EXIT_STATUSES

REPO = Path(__file__).resolve().parent.parent


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """The main parser and every sub-command's, found by walking the parser itself."""
    found = []
    todo = [("resnet-spec", build_parser())]
    while todo:
        name, parser = todo.pop()
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", child) for sub, child in action.choices.items()]
    return found


def test_the_walk_finds_every_registered_command() -> None:
    names = {name for name, _ in _parsers()}
    assert names == {"resnet-spec"} | {f"resnet-spec {c}" for c in COMMANDS}


@pytest.mark.parametrize(("name", "parser"), _parsers(), ids=[n for n, _ in _parsers()])
def test_every_option_has_help(name: str, parser: argparse.ArgumentParser) -> None:
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help and action.help.strip())
    ]
    assert not missing, f"{name}: options without help: {missing}"


@pytest.mark.parametrize(("name", "parser"), _parsers(), ids=[n for n, _ in _parsers()])
def test_every_command_has_examples_and_exit_statuses(name: str, parser: argparse.ArgumentParser) -> None:
    epilog = parser.epilog or ""
    assert "examples:\n  resnet-spec" in epilog or "examples:\n  torchrun" in epilog, name
    for code, _ in EXIT_STATUSES:
        assert re.search(rf"^  {code} ", epilog, re.MULTILINE), f"{name}: exit status {code} missing"


def test_help_through_the_module_and_the_exit_status_table() -> None:
    done = subprocess.run([sys.executable, "-m", "resnet_spec.cli", "train", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--epochs" in done.stdout and "exit status:" in done.stdout and "examples:" in done.stdout


def test_usage_error_is_status_2() -> None:
    done = subprocess.run([sys.executable, "-m", "resnet_spec.cli", "validate", "--no-such-option", "x.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


def test_readme_lists_every_command_and_exit_status() -> None:
    readme = (REPO / "README.md").read_text()
    for command in COMMANDS:
        assert f"| `resnet-spec {command}" in readme, f"README's Commands table lacks {command}"
    table = readme[readme.index("### Exit statuses"):]
    for code, _ in EXIT_STATUSES:
        assert f"| {code} |" in table
