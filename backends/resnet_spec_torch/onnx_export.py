"""ONNX export of a compiled network, and the eval-mode forward it is checked against.

``torch.onnx.export(..., dynamo=True)``: the graph is captured by ``torch.export`` (the
network's own ``forward``, no tracing of Python control flow by example) and translated by
onnxscript, offline. The batch dimension is dynamic (``batch``); height, width and channels are
the spec's. The input is NCHW float32 named ``images``; the outputs are the network's: one,
``output`` (logits, or probabilities when the spec ends in a softmax), or a backbone's feature
maps (``head.features``), one NCHW output per feature, named as the features are, in the spec's
order. The spec, its architecture hash, the layout and the output names -> graph nodes
(``outputs``) travel in the model's ``metadata_props`` (``resnet_spec.*``).
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
                                        output_names=output_names(arch), dynamic_shapes=({0: batch},),
                                        verbose=False)  # fmt: skip
        except Exception as exc:  # the exporter raises many types; all mean "this network did not export"
            raise BackendError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    if program is None:  # only when given a file name to write to, which is not done here
        raise BackendError("torch.onnx.export returned no program")
    proto = program.model_proto
    written = [o.name for o in proto.graph.output]
    if written != output_names(arch):  # the names are the contract with the reader (onnxruntime, parity)
        raise BackendError(f"torch.onnx.export named the outputs {written}, not {output_names(arch)}")
    for key, value in _metadata(arch, spec_data).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def output_names(arch: Any) -> list[str]:
    """The file's output names: a backbone's feature names (spec order), else ``output``."""
    return list(arch.graph.outputs) if arch.graph.outputs else [OUTPUT]


def _metadata(arch: Any, spec_data: Mapping[str, Any]) -> dict[str, str]:
    nodes = dict(arch.graph.outputs) or {OUTPUT: arch.graph.output}
    return {"hash": arch.hash, "spec": json.dumps(dict(spec_data), sort_keys=True), "version": __version__,
            "layout": "NCHW", "output_node": arch.graph.output, "outputs": json.dumps(nodes)}  # fmt: skip


def named(outputs: Any, names: list[str]) -> dict[str, np.ndarray]:
    """A forward's result (a tensor, or a backbone's dict of them) as output name -> array."""
    if isinstance(outputs, Mapping):
        return {str(k): v.detach().cpu().numpy() for k, v in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        return {name: v.detach().cpu().numpy() for name, v in zip(names, outputs, strict=True)}
    return {names[0]: outputs.detach().cpu().numpy()}


def predict(model: nn.Module, images: np.ndarray, arch: Any) -> dict[str, np.ndarray]:
    """The network's outputs (name -> NCHW or (N, K) array, names as in the ONNX file) for NHWC
    float32 ``images``: one eval-mode ``forward`` of a float32 CPU model (what the ONNX file and
    the ``.pt2`` program are checked against)."""
    net = unwrap(model)
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad():
            return named(net(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))), output_names(arch))
    finally:
        for module, training in modes:
            module.training = training
