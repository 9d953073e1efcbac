"""``resnet-spec parity``: build a spec in two backends with the same weights and compare them."""

from __future__ import annotations

import argparse

from .common import EXIT_INVALID, EXIT_OK, add_format, add_overrides, fail, print_json, print_problems, validated

NAME = "parity"
HELP = "build the spec in two backends, share weights, compare layer by layer (docs/parity.md)"
EPILOG = """\
examples:
  resnet-spec parity examples/resnet20_cifar10.yaml
  resnet-spec parity examples/resnet20_cifar10.yaml --precision float32
  resnet-spec parity examples/resnet18.yaml --steps 1 --batch-size 1 --format json
exit status 1 means a check is beyond its tolerance: the two models are not the same function.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="SPEC", help="YAML or JSON spec ('-' for standard input)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared initial weights and input batches (default 0)")
    parser.add_argument("--steps", type=int, default=2, help="SGD steps before comparing weights (default 2)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per batch of the comparison (default 2)")
    parser.add_argument("--backends", default="keras,torch", help="two backends, comma-separated (default keras,torch)")
    parser.add_argument("--precision", choices=("float32", "float64"), default="float64",
                        help="float64 (default) separates mapping errors from float32 rounding (docs/parity.md)")  # fmt: skip
    add_format(parser, "every check with its worst node, errors and limit")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from .. import parity
    from ..backends import BackendError

    result = validated(args.file, args.overrides)
    if result.architecture is None:
        print_problems(result)
        return EXIT_INVALID
    names = tuple(args.backends.split(","))
    if len(names) != 2:
        fail("--backends takes two names, e.g. keras,torch")
    try:
        report = parity.run(result.architecture, backends=(names[0], names[1]), seed=args.seed, steps=args.steps,
                            batch_size=args.batch_size, precision=args.precision)  # fmt: skip
    except BackendError as exc:
        fail(str(exc))
    if args.format == "json":
        print_json(report.to_json())
    else:
        print(parity.render_text(report))
    return EXIT_OK if report.ok else EXIT_INVALID
