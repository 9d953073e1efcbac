"""``torch.export`` programs (``.pt2``): the compiled network as a graph that plain PyTorch loads
without resnet-spec (``torch.export.load(path).module()``), batch dimension dynamic.

The spec, its architecture hash and the layout travel in the archive's ``extra_files`` as
``resnet_spec.json`` (``torch.export.load(path, extra_files={"resnet_spec.json": ""})`` reads it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_spec import __version__
from resnet_spec.atomic import atomic_path
from resnet_spec.backends import BackendError

from .weights import unwrap

META = "resnet_spec.json"


def export_program(model: nn.Module, arch: Any, spec_data: Mapping[str, Any], path: Path) -> None:
    """Write ``model`` (float32, CPU, eval mode) as a ``torch.export`` archive, atomically."""
    net = unwrap(model).float().cpu().eval()
    spec_input = arch.spec.input
    example = torch.zeros(2, spec_input.channels, spec_input.height, spec_input.width)
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # torch.export raises many types; all mean "this network did not export"
        raise BackendError(f"torch.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    meta = {"hash": arch.hash, "spec": dict(spec_data), "version": __version__, "layout": "NCHW",
            "output_node": arch.graph.output}  # fmt: skip
    with atomic_path(path) as tmp:
        torch.export.save(program, tmp, extra_files={META: json.dumps(meta, sort_keys=True)})


def predict_program(path: Path, images: np.ndarray, arch: Any) -> dict[str, np.ndarray]:
    """The archive's outputs (name -> array, as :func:`.onnx_export.predict` names them) for NHWC
    float32 ``images``, loaded as plain PyTorch loads it."""
    from .onnx_export import named, output_names

    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        return named(module(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))), output_names(arch))
