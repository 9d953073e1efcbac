"""``resnet-spec validate``: check spec files, or every spec under a folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..diagnostics import render_json
from ..pipeline import Result
from .common import (
    EXIT_INVALID,
    EXIT_OK,
    add_format,
    add_overrides,
    fail,
    print_json,
    print_problems,
    printable,
    validated,
)

NAME = "validate"
HELP = "check spec files (or every spec under a folder); exit 1 if any has errors"
EPILOG = """\
examples:
  resnet-spec validate examples/resnet50.yaml
  resnet-spec validate examples/                       every *.yaml, *.yml and *.json under it
  resnet-spec validate spec.yaml --set depth=56 --set stages.1.shortcut=projection
  cat spec.yaml | resnet-spec validate -
  resnet-spec validate --format json examples/ | jq '.[] | select(.valid | not)'
"""
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="YAML or JSON spec, a folder (every *.yaml, *.yml, *.json under it, hidden folders "
                             "skipped), or '-' for standard input")  # fmt: skip
    add_overrides(parser)
    add_format(parser, "a list with each file's validity, architecture hash and diagnostics")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid files")


def spec_files(names: list[str]) -> list[str]:
    """The names given, each folder replaced by the spec files under it (sorted)."""
    found: list[str] = []
    for name in names:
        folder = Path(name)
        if name == "-" or not folder.is_dir():
            found.append(name)
            continue
        inside = sorted(
            p for p in folder.rglob("*")
            if p.suffix.lower() in SPEC_SUFFIXES and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )  # fmt: skip
        if not inside:
            fail(f"{name} is a folder without spec files (*.yaml, *.yml or *.json)")
        found.extend(str(p) for p in inside)
    return found


def run(args: argparse.Namespace) -> int:
    names = spec_files(args.files)
    results = {name: validated(name, args.overrides) for name in names}
    if args.format == "json":
        print_json([
            {"file": name, "valid": r.ok, "hash": r.architecture.hash if r.architecture else None,
             "diagnostics": json.loads(render_json(r.report.sorted()))}
            for name, r in results.items()
        ])  # fmt: skip
    else:
        for name, result in results.items():
            _print_result(name, result, args.quiet)
        if len(results) > 1:
            bad = sum(not r.ok for r in results.values())
            print(f"{len(results)} files: {len(results) - bad} valid, {bad} with errors")
    return EXIT_OK if all(r.ok for r in results.values()) else EXIT_INVALID


def _print_result(name: str, result: Result, quiet: bool) -> None:
    if result.ok:
        if not quiet:
            arch = result.architecture
            assert arch is not None
            print(f"{printable(name)}: ok ({arch.params_trainable:,} trainable parameters, {arch.macs / 1e9:.3f} GMACs)")
        return
    print_problems(result, sys.stdout)
    count = len(result.report.errors)
    print(f"{printable(name)}: {count} error{'s' if count != 1 else ''}")
