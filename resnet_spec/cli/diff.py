"""``resnet-spec diff``: the command line of :mod:`resnet_spec.diff` (options and behaviour live there)."""

from __future__ import annotations

from ..diff import HELP, NAME, run
from ..diff import add_arguments as configure

__all__ = ["EPILOG", "HELP", "NAME", "configure", "run"]

EPILOG = """\
examples:
  resnet-spec diff examples/resnet20_cifar10.yaml examples/resnet56_cifar10.yaml
  resnet-spec diff examples/resnet20_cifar10.yaml --set-b stages.1.shortcut=projection --set-b stages.2.shortcut=projection
  resnet-spec diff examples/resnet50.yaml examples/resnext50_32x4d.yaml --format json
"""
