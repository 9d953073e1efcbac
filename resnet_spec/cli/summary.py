"""``resnet-spec summary``: per-block (or per-node) shapes, parameters and MACs of one or more specs."""

from __future__ import annotations

import argparse

from .common import EXIT_INVALID, EXIT_OK, add_format, add_overrides, print_json, print_problems, printable, validated

NAME = "summary"
HELP = "per-block table of output shapes, parameters and MACs of one or more specs"
EPILOG = """\
examples:
  resnet-spec summary examples/resnet50.yaml
  resnet-spec summary examples/resnet18.yaml examples/resnet34.yaml     one table after the other
  resnet-spec summary examples/resnet20_cifar10.yaml --nodes            one row per graph node
  resnet-spec summary examples/resnet50.yaml --format json              one object (a list for several files)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML or JSON spec ('-' for standard input)")
    add_overrides(parser)
    add_format(parser, "an object with the file, its totals, blocks and nodes; a list of them for several files")
    parser.add_argument("--nodes", action="store_true", help="one row per graph node instead of per block")


def run(args: argparse.Namespace) -> int:
    from ..summary import to_json, to_text

    results = [(name, validated(name, args.overrides)) for name in args.files]
    status = EXIT_OK
    summaries = []
    for name, result in results:
        if not result.ok or result.architecture is None:
            print_problems(result)
            status = EXIT_INVALID
            continue
        summaries.append((name, result.architecture))
    if args.format == "json":
        documents = [{"file": name, **to_json(arch)} for name, arch in summaries]
        print_json(documents[0] if len(args.files) == 1 and documents else documents)
    else:
        for index, (name, arch) in enumerate(summaries):
            if len(args.files) > 1:
                print(("\n" if index else "") + f"== {printable(name)}")
            print(to_text(arch, per_node=args.nodes))
    return status
