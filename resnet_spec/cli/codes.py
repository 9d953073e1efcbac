"""``resnet-spec codes``: the catalogue of diagnostic codes."""

from __future__ import annotations

import argparse
import sys

from ..diagnostics import CODES, catalogue_markdown
from .common import EXIT_OK, add_format, print_json

NAME = "codes"
HELP = "list the diagnostic codes (also docs/diagnostics.md)"
EPILOG = """\
examples:
  resnet-spec codes
  resnet-spec codes --format json | jq '.[] | select(.code == "RS201")'
  resnet-spec codes --markdown > docs/diagnostics.md
"""


def configure(parser: argparse.ArgumentParser) -> None:
    add_format(parser, "a list of {code, title, explanation}")
    parser.add_argument("--markdown", action="store_true", help="the catalogue as a Markdown table (docs/diagnostics.md)")


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(catalogue_markdown())
    elif args.format == "json":
        print_json([{"code": code, "title": info.title, "explanation": info.explanation} for code, info in CODES.items()])
    else:
        for code, info in CODES.items():
            print(f"{code}  {info.title}: {info.explanation}")
    return EXIT_OK
