"""``resnet-spec diagram``: the command line of :mod:`resnet_spec.diagram` (options and behaviour live there)."""

from __future__ import annotations

from ..diagram import HELP, NAME, run
from ..diagram import add_arguments as configure

__all__ = ["EPILOG", "HELP", "NAME", "configure", "run"]

EPILOG = """\
examples:
  resnet-spec diagram examples/resnet20_cifar10.yaml -o resnet20.svg
  resnet-spec diagram examples/resnet1202_cifar10.yaml -o resnet1202.png      identical blocks collapse to 'xN'
  resnet-spec diagram examples/resnet56_cifar10.yaml -o r56.svg --collapse never
  resnet-spec diagram examples/resnet20_cifar10.yaml -o b.png --set stages.1.shortcut=projection
"""
