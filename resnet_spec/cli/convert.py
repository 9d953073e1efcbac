"""``resnet-spec convert``: a saved model -> the same model in another backend."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_INVALID, EXIT_OK, add_force, check_input, check_output, fail, refuse_training_paths

NAME = "convert"
HELP = "convert a saved model to another backend, weights and norm statistics included"
EPILOG = """\
examples:
  resnet-spec convert resnet20.keras --to torch -o resnet20.pt
  resnet-spec convert resnet20.pt --to keras -o resnet20.keras --force
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
    from ..backends import BackendError, backend_for_file, get_backend
    from ..pipeline import build_architecture

    check_input(args.model)
    refuse_training_paths(args.model)
    try:
        target = get_backend(args.target)
    except BackendError as exc:
        fail(str(exc))
    check_output(args.output, suffix=target.suffix, force=args.force)
    try:
        source_name = backend_for_file(args.model)
        model, meta = get_backend(source_name).load(args.model)
        arch = build_architecture(meta["spec"])
        converted = target.build(arch)
        parity.transfer(model, source_name, converted, args.target, arch)
        target.save(converted, arch, meta["spec"], args.output)
    except BackendError as exc:
        fail(str(exc), EXIT_INVALID)
    print(f"wrote {args.output} ({source_name} -> {args.target}, {arch.hash[:19]})")
    return EXIT_OK
