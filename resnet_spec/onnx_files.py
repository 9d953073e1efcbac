"""ONNX files written by ``resnet-spec export``, read and run with onnxruntime (no framework).

The exporter (``resnet_spec_torch.onnx_export``) stores the spec, its architecture hash and the
input layout (NCHW) in the model's ``metadata_props`` under ``resnet_spec.*``; :func:`metadata`
reads them back without loading the weights' tensors into a session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "resnet_spec."


class OnnxFileError(Exception):
    """An ONNX file that cannot be read or was not written by resnet-spec."""


def metadata(path: Path) -> dict[str, Any]:
    """``hash``, ``spec`` (as data), ``layout``, ``output_node``, ``outputs`` (output name ->
    node, JSON; absent in files of one output written before it) and ``version`` of a file
    ``export`` wrote."""
    import onnx

    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise OnnxFileError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    props = {p.key[len(PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    if "hash" not in props or "spec" not in props:
        raise OnnxFileError(f"{path}: no resnet-spec metadata inside (not written by `resnet-spec export`)")
    try:
        props["spec"] = json.loads(props["spec"])
    except ValueError as exc:
        raise OnnxFileError(f"{path}: its resnet_spec.spec metadata is not JSON ({exc})") from exc
    return props


def session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its graph-optimizer notices are not the user's business
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types are not importable under one name
        raise OnnxFileError(f"{path}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from exc


def outputs(session: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the model (output name -> array, as the file lays it out: NCHW maps) for
    NHWC float32 ``images`` (transposed to the file's NCHW)."""
    name = session.get_inputs()[0].name
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    return {n: np.asarray(v) for n, v in zip(names, session.run(names, {name: nchw}), strict=True)}


def output_nodes(meta: dict[str, Any], names: list[str], default: str) -> dict[str, str]:
    """Output name -> graph node, from the ``outputs`` metadata (files of a single output written
    before it existed: their one output is ``output_node``)."""
    try:
        nodes = json.loads(meta["outputs"]) if "outputs" in meta else None
    except ValueError as exc:
        raise OnnxFileError(f"its resnet_spec.outputs metadata is not JSON ({exc})") from exc
    if nodes is None:
        if len(names) != 1:
            raise OnnxFileError(f"{len(names)} outputs and no resnet_spec.outputs metadata naming their nodes")
        return {names[0]: meta.get("output_node") or default}
    if not isinstance(nodes, dict) or sorted(nodes) != sorted(names):
        raise OnnxFileError(f"its outputs {names} are not the ones its resnet_spec.outputs metadata names")
    return {name: str(nodes[name]) for name in names}


def neutral(value: np.ndarray) -> np.ndarray:
    """An output in the neutral layout parity compares: NCHW maps as NHWC; vectors as they are."""
    return np.ascontiguousarray(value.transpose(0, 2, 3, 1)) if value.ndim == 4 else value
