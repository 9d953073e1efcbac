"""``resnet-spec convert``: a saved model -> the same model in another backend."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    EXIT_INVALID,
    EXIT_OK,
    add_force,
    check_input,
    check_output,
    fail,
    print_warning,
    printable,
    refuse_training_paths,
)
from .load import backend_of

NAME = "convert"
HELP = "convert a saved model to another backend, weights and norm statistics included"
EPILOG = """\
examples:
  resnet-spec convert resnet20.keras --to torch -o resnet20.pt
  resnet-spec convert resnet20.pt --to keras -o resnet20.keras --force
  resnet-spec convert old.pt --to torch -o new.pt          re-save a file written without digests
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="a model file written by `compile`, `convert`, `import-weights` or `export` "
                             "(a training run: `resnet-spec export RUN -o FILE` first)")  # fmt: skip
    parser.add_argument("--to", required=True, dest="target", metavar="BACKEND", help="the backend to convert to (keras, torch, ...)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="model file to write, with the target backend's suffix")
    add_force(parser)


def run(args: argparse.Namespace) -> int:
    from .. import parity
    from ..backends import BackendError
    from ..pipeline import build_architecture

    check_input(args.model)
    refuse_training_paths(args.model)
    _, target = backend_of(args.output, args.target)
    check_output(args.output, suffix=target.suffix, force=args.force)
    source_name, source = backend_of(args.model, None)
    try:
        model, meta = source.load(args.model)
        status = meta.get("integrity") or {}
        if status.get("status") != "verified":
            print_warning(status.get("message") or f"{args.model}: no integrity digests")
        arch = build_architecture(meta["spec"])
        converted = target.build(arch)
        parity.transfer(model, source_name, converted, args.target, arch)
        target.save(converted, arch, meta["spec"], args.output)
    except BackendError as exc:
        fail(str(exc), EXIT_INVALID)
    print(printable(f"wrote {args.output} ({source_name} -> {args.target}, {arch.hash[:19]})"))
    return EXIT_OK
