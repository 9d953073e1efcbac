"""``resnet-spec schema``: the JSON Schema of the spec language."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_OK

NAME = "schema"
HELP = "print the JSON Schema (draft 2020-12) of the spec language"
EPILOG = """\
examples:
  resnet-spec schema > resnet-spec.schema.json
  resnet-spec schema --write .          after changing resnet_spec/spec.py: regenerate the committed copies
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", metavar="REPO", type=Path,
                        help="regenerate the committed schema files under the repository folder REPO")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from .. import schema

    if args.write:
        for path in schema.write(args.write):
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(schema.packaged_text())
    return EXIT_OK
