"""``resnet-spec parity``: build a spec in two backends with the same weights and compare them
(options, reports and exit statuses: :mod:`resnet_spec.parity.command`)."""

from __future__ import annotations

import argparse
import sys

from ..parity.command import add_arguments
from .common import EXIT_USAGE, add_overrides, print_problems, validated

NAME = "parity"
HELP = "build the spec in two backends, share weights, compare layer by layer (docs/parity.md)"
EPILOG = """\
examples:
  resnet-spec parity examples/resnet20_cifar10.yaml
  resnet-spec parity examples/resnet20_cifar10.yaml --precision float32
  resnet-spec parity examples/resnet18.yaml --steps 1 --batch-size 2 --format json
  resnet-spec parity examples/resnet50.yaml --junit-xml parity.xml          a JUnit report for CI
  resnet-spec parity digits.pt digits.keras          two saved models on the same batch, node by node
  resnet-spec parity digits.pt digits.onnx           a model and its ONNX export (outputs, float32)
exit status 1 means a check is beyond its tolerance (or compared nothing, see --allow-vacuous):
the two models are not the same function.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from ..parity.command import run_command, run_files

    if args.other is not None:
        if args.overrides:
            print("error: --set applies to a spec; two files are compared as they are", file=sys.stderr)
            return EXIT_USAGE
        return run_files(args)
    return run_command(args, validated(args.file, args.overrides), print_problems)
