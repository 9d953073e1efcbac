"""ONNX export of a compiled network, and the eval-mode forward it is checked against.

``torch.onnx.export(..., dynamo=True)``: the graph is captured by ``torch.export`` (the
network's own ``forward``, no tracing of Python control flow by example) and translated by
onnxscript, offline. The batch dimension is dynamic (``batch``); height, width and channels are
the spec's. The input is NCHW float32 named ``images``, the output the network's output
(``output``: logits, or probabilities when the spec ends in a softmax). The spec, its
architecture hash and the layout travel in the model's ``metadata_props`` (``resnet_spec.*``).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
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

# The newest opset that every onnxruntime the `onnx` extra allows (>= 1.18) runs.
DEFAULT_OPSET = 21
INPUT, OUTPUT = "images", "output"
METADATA_PREFIX = "resnet_spec."


def export_onnx(model: nn.Module, arch: Any, spec_data: Mapping[str, Any], path: Path, *,
                opset: int = DEFAULT_OPSET) -> None:  # fmt: skip
    """Write ``model`` (float32, CPU, eval mode) as an ONNX file at ``path``, atomically."""
    import onnx

    net = unwrap(model).float().cpu().eval()
    spec_input = arch.spec.input
    example = torch.zeros(2, spec_input.channels, spec_input.height, spec_input.width)
    batch = torch.export.Dim("batch", min=1)
    # The exporter reports progress on standard output and warns about its own internals; a
    # failure still raises, with its message.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, input_names=[INPUT],
                                        output_names=[OUTPUT], dynamic_shapes=({0: batch},), verbose=False)  # fmt: skip
        except Exception as exc:  # the exporter raises many types; all mean "this network did not export"
            raise BackendError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    if program is None:  # only when given a file name to write to, which is not done here
        raise BackendError("torch.onnx.export returned no program")
    proto = program.model_proto
    for key, value in _metadata(arch, spec_data).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def _metadata(arch: Any, spec_data: Mapping[str, Any]) -> dict[str, str]:
    return {"hash": arch.hash, "spec": json.dumps(dict(spec_data), sort_keys=True), "version": __version__,
            "layout": "NCHW", "output_node": arch.graph.output}  # fmt: skip


def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """The network's output for NHWC float32 ``images``: one eval-mode ``forward`` of a float32
    CPU model (what the ONNX file is checked against)."""
    net = unwrap(model)
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))).numpy()
    finally:
        for module, training in modes:
            module.training = training
