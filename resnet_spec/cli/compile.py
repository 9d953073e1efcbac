"""``resnet-spec compile``: a spec -> a saved native model (``.keras`` or a self-describing ``.pt``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    EXIT_INVALID,
    EXIT_OK,
    add_force,
    add_overrides,
    check_output,
    fail,
    print_problems,
    printable,
    validated,
)

NAME = "compile"
HELP = "compile a spec into a saved native model (written atomically)"
EPILOG = """\
examples:
  resnet-spec compile examples/resnet18.yaml --backend torch -o resnet18.pt
  resnet-spec compile examples/resnet50.yaml --backend keras -o resnet50.keras --print
  resnet-spec compile spec.yaml --backend torch --set depth=56 -o r56.pt --force
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="SPEC", help="YAML or JSON spec ('-' for standard input)")
    parser.add_argument("--backend", required=True, help="keras, torch, or an installed third-party backend (see `resnet-spec backends`)")
    parser.add_argument("-o", "--output", type=Path,
                        help="model file to write, with the backend's suffix (default: the spec's name + .keras or .pt)")  # fmt: skip
    parser.add_argument("--print", dest="print_summary", action="store_true", help="print the framework's own summary")
    add_force(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError, get_backend

    result = validated(args.file, args.overrides)
    if result.architecture is None or result.document is None:
        print_problems(result)
        return EXIT_INVALID
    try:
        backend = get_backend(args.backend)
    except BackendError as exc:
        fail(str(exc))
    arch = result.architecture
    output = args.output or Path(Path(args.file).stem + backend.suffix)
    check_output(output, suffix=backend.suffix, force=args.force)
    try:
        model = backend.build(arch)
        backend.save(model, arch, result.document.data, output)
    except BackendError as exc:  # a refusal (a spec the backend cannot store): an error, not a usage one
        fail(str(exc), EXIT_INVALID)
    if args.print_summary:
        print(backend.framework_summary(model))
    trainable, non_trainable = backend.count_params(model)
    print(printable(f"wrote {output} ({args.backend}: {trainable:,} trainable, {non_trainable:,} non-trainable parameters; {arch.hash[:19]})"))
    return EXIT_OK
