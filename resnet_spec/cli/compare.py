"""``resnet-spec compare``: the command line of :mod:`resnet_spec.compare` (options and behaviour live there)."""

from __future__ import annotations

from ..compare import HELP, NAME, run
from ..compare import add_arguments as configure

__all__ = ["EPILOG", "HELP", "NAME", "configure", "run"]

EPILOG = """\
examples:
  resnet-spec compare runs/digits-keras runs/digits-torch -o curves.png
  resnet-spec compare runs/r20 runs/r56 --label resnet20 --label resnet56 --x step -o r20-r56.png
  resnet-spec compare runs/* --format json                                   the table only
"""
