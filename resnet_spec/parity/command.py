"""The ``resnet-spec parity`` command: its options and what it prints and writes.

Exit status: 0 the two models are the same function (every check within tolerance, none
vacuous unless allowed); 1 they are not, or the spec does not validate; 2 a usage error (bad
option, unknown backend, framework missing, settings that cannot give a meaningful result, a
``--junit-xml`` file that exists and was not written by this command). Kept apart from the
command-line module so that the parser and the handler move together."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pipeline import Result
    from .report import ParityReport

EXIT_SAME, EXIT_DIFFERENT, EXIT_USAGE = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="SPEC", help="YAML or JSON spec ('-' for standard input); or, with a second file, a saved model")
    p.add_argument("other", nargs="?", metavar="FILE",
                   help="a second saved model (.pt, .keras) or an ONNX file: compare the two files' outputs on the same "
                        "batch instead of building a spec (docs/parity.md)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the shared initial weights and input batches (default 0)")
    p.add_argument("--steps", type=int, default=2, help="SGD steps before comparing weights (default 2)")
    p.add_argument("--batch-size", type=int, default=2,
                   help="images per batch (default 2); every batch norm needs at least 2 values per channel")  # fmt: skip
    p.add_argument("--backends", default="keras,torch", help="two backends, comma-separated (default keras,torch)")
    p.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float64",
        help="float64 (default) separates mapping errors from float32 rounding (docs/parity.md)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: every check, row, limit, hazard and precision decision (docs/parity.md)")  # fmt: skip
    p.add_argument("--junit-xml", metavar="FILE", help="also write a JUnit XML report (one test case per check)")
    p.add_argument("--allow-vacuous", action="store_true",
                   help="a check that compared nothing (no tensors, or all zero in both frameworks) does not fail")  # fmt: skip


def run_command(args: argparse.Namespace, result: Result, print_problems: Callable[[Result], None]) -> int:
    from ..backends import BackendError
    from . import SettingsError, run

    started = time.perf_counter()
    names = tuple(name.strip() for name in args.backends.split(","))
    if len(names) != 2 or not all(names):
        print("error: --backends takes two names, e.g. keras,torch", file=sys.stderr)
        return EXIT_USAGE
    if _foreign_junit(args):
        return EXIT_USAGE
    if result.architecture is None:
        print_problems(result)
        problems = "\n".join(f"{d.code}: {d.message}" for d in result.report.sorted())
        return _junit(args, [(args.file, f"the spec does not validate\n{problems}")], started) or EXIT_DIFFERENT
    try:
        report = run(result.architecture, backends=names, seed=args.seed, steps=args.steps,  # type: ignore[arg-type]
                     batch_size=args.batch_size, precision=args.precision, allow_vacuous=args.allow_vacuous)  # fmt: skip
    except (BackendError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _junit(args, [(args.file, str(exc))], started)
        return EXIT_USAGE
    report.spec = args.file
    return _print(args, report, started)


def run_files(args: argparse.Namespace) -> int:
    """``parity A B``: two files on the same batch (:mod:`resnet_spec.parity.files`)."""
    from pathlib import Path

    from ..backends import BackendError
    from . import SettingsError
    from .files import FileRefused, compare_files

    started = time.perf_counter()
    if _foreign_junit(args):
        return EXIT_USAGE
    for name in (args.file, args.other):
        if not Path(name).is_file():
            print(f"error: {name}: no such model file", file=sys.stderr)
            return EXIT_USAGE
    if args.steps != 2 or args.backends != "keras,torch":
        print("error: --steps and --backends apply to a spec; two files are compared as they are", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = compare_files(Path(args.file), Path(args.other), seed=args.seed, batch_size=args.batch_size,
                               precision=args.precision, allow_vacuous=args.allow_vacuous)  # fmt: skip
    except FileRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _junit(args, [(f"{args.file} vs {args.other}", str(exc))], started) or EXIT_DIFFERENT
    except (BackendError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _print(args, report, started)


def _print(args: argparse.Namespace, report: ParityReport, started: float) -> int:
    from . import render_text

    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2, allow_nan=False))
    else:
        print(render_text(report))
    return _junit(args, [(report.spec or args.file, report)], started) or (EXIT_SAME if report.ok else EXIT_DIFFERENT)


def _foreign_junit(args: argparse.Namespace) -> bool:
    """True (after saying so) when --junit-xml names an existing file this command did not write."""
    from pathlib import Path

    from .junit import written_by_us

    if args.junit_xml and Path(args.junit_xml).exists() and not written_by_us(Path(args.junit_xml)):
        print(f"error: {args.junit_xml} exists and is not a resnet-spec JUnit report; remove it or choose another path",
              file=sys.stderr)  # fmt: skip
        return True
    return False


def _junit(args: argparse.Namespace, reports: list, started: float) -> int:  # type: ignore[type-arg]
    """Write the JUnit report if asked; a non-zero exit status if it cannot be written."""
    if not args.junit_xml:
        return 0
    from . import write_junit

    try:
        write_junit(args.junit_xml, reports, seconds=time.perf_counter() - started)
    except (FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
