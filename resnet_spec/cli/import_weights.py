"""``resnet-spec import-weights``: the command line of :mod:`resnet_spec.importing.command`."""

from __future__ import annotations

from ..importing.command import HELP, NAME, run
from ..importing.command import add_arguments as configure

__all__ = ["EPILOG", "HELP", "NAME", "configure", "run"]

EPILOG = """\
examples:
  resnet-spec import-weights examples/resnet50.yaml resnet50.pth -o resnet50.pt          a torchvision state dict
  resnet-spec import-weights examples/timm_resnet50d.yaml model.safetensors -o r50d.keras
  resnet-spec import-weights examples/keras_resnet50_imagenet.yaml resnet50.h5 -o r50.pt --list
  resnet-spec import-weights examples/resnet18_xray.yaml resnet18.pth -o xray.pt --classifier auto
"""
