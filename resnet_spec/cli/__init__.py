"""The ``resnet-spec`` command line.

One module per command under this package; :data:`COMMANDS` lists them in the order ``--help``
shows them. A command module defines ``NAME``, ``HELP`` (one line), ``EPILOG`` (examples),
``configure(parser)`` and ``run(args) -> int``, and imports any framework inside ``run`` only:
``validate``, ``summary``, ``schema``, ``codes`` and ``backends`` never import TensorFlow or
PyTorch, and neither does start-up. To add a command, add a module and one line here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from .. import __version__
from ..backends import BackendError
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_USAGE,
    CommandError,
    exit_status_text,
    print_error,
)
from .environment import missing_package_hint, quiet_frameworks

COMMANDS = (
    "validate",
    "summary",
    "schema",
    "codes",
    "backends",
    "compile",
    "load",
    "convert",
    "export",
    "import_weights",
    "parity",
    "train",
    "evaluate",
    "demo",
    "diagram",
    "diff",
    "compare",
)

DESCRIPTION = "Declarative ResNet specs: validate, summarize, compile to Keras or PyTorch, check parity, train."
EXAMPLES = """\
examples:
  resnet-spec validate examples/                       every spec under a folder
  resnet-spec summary examples/resnet50.yaml           shapes, parameters and MACs per block
  resnet-spec compile examples/resnet18.yaml --backend torch -o resnet18.pt
  resnet-spec train examples/resnet_digits.yaml --backend torch --data digits --out runs/r1
  resnet-spec COMMAND --help                           options and examples of one command
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    quiet = contextlib.nullcontext() if args.verbose else quiet_frameworks()  # before a command imports TensorFlow
    try:
        with quiet:
            status = int(args.run(args))
        sys.stdout.flush()  # a closed pipe is reported here, not by the interpreter's last flush
        return status
    except CommandError as exc:
        print_error(str(exc))
        return exc.status
    except ModuleNotFoundError as exc:
        hint = missing_package_hint(exc)
        if hint is None:
            return _unexpected(exc, args.verbose)
        print_error(hint)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `resnet-spec codes | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again
        return EXIT_BROKEN_PIPE
    except BackendError as exc:  # a backend's refusal that a command did not catch itself
        print_error(str(exc))
        return EXIT_INVALID
    except OSError as exc:  # a read or write that failed midway (disk full, a folder removed)
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{exc.strerror or _one_line(exc)}")
        return EXIT_INVALID
    except Exception as exc:  # noqa: BLE001 -- a bug: one line, the traceback with --verbose
        return _unexpected(exc, args.verbose)


def _unexpected(exc: BaseException, verbose: bool) -> int:
    if verbose:
        raise exc
    print_error(f"unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in resnet-spec; "
                "rerun with --verbose for the traceback and report it)")  # fmt: skip
    return EXIT_INVALID


def command_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="resnet-spec", description=DESCRIPTION, formatter_class=formatter,
                                     epilog=EXAMPLES + "\n" + exit_status_text())  # fmt: skip
    parser.add_argument("--version", action="version", version=f"resnet-spec {__version__}",
                        help="print the version and exit")  # fmt: skip
    _add_verbose(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in command_modules():
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP[:1].upper() + module.HELP[1:] + ".",
                                 epilog=module.EPILOG.rstrip() + "\n\n" + exit_status_text(), formatter_class=formatter)  # fmt: skip
        _add_verbose(command, argparse.SUPPRESS)  # also after the command: `resnet-spec train ... --verbose`
        module.configure(command)
        command.set_defaults(run=module.run)
    return parser


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="show the frameworks' own start-up logging (TensorFlow, absl, XLA), hidden by default")  # fmt: skip


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
