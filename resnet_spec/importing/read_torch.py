"""PyTorch files (``.pth`` / ``.pt`` / ``.bin``) and ``.safetensors``, read under :mod:`.safety`.

PyTorch: only the zip format (``torch.save`` since 1.6) is read, and only after the archive's
declared member sizes are checked; then ``torch.load(weights_only=True)``, whose restricted
unpickler builds tensors and plain containers and nothing else. The legacy (pre-zip) format
declares its storage sizes inside the pickle, where they cannot be checked before loading: it
is refused with a note on how to re-save it.

safetensors: the 8-byte header length is checked before the library reads the header; the
library then validates every tensor's offsets against the file (it maps the file, nothing is
inflated), and each tensor's declared dtype and shape are checked before it is read. NumPy
reads every dtype but bfloat16, which goes through torch when it is installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .safety import (
    FLOAT_NAMES,
    ReadLimits,
    WeightsImportError,
    bookkeeping,
    check_declared,
    check_file,
    check_shape,
    check_zip,
    checked_array,
    one_line,
)

ZIP_MAGIC = b"PK\x03\x04"
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema")
_SAFETENSORS_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise WeightsImportError("reading PyTorch files needs torch: pip install 'resnet-spec[torch]'") from None
    return torch


def read_pth(path: Path, limits: ReadLimits) -> Any:
    """The object a PyTorch file holds (a state dict, a resnet-spec model payload...)."""
    check_file(path, limits)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != ZIP_MAGIC:
        if magic[:1] == b"\x80":
            raise WeightsImportError(
                f"{path}: a legacy (pre-1.6, non-zip) PyTorch file, whose sizes cannot be checked before loading; "
                "re-save it with torch.save(torch.load(path, weights_only=True), new_path) in a PyTorch you trust"
            )
        raise WeightsImportError(f"{path}: not a PyTorch file (no zip archive inside)")
    members = check_zip(path, limits, "PyTorch file")
    pickles = [m for m in members if m.filename.endswith(".pkl")]
    if any(m.file_size > limits.max_header_bytes for m in pickles):
        raise WeightsImportError(f"{path}: its pickle declares more than {limits.max_header_bytes:,} bytes")
    torch = _torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign, damaged or hostile files
        raise WeightsImportError(
            f"{path}: not a loadable PyTorch file ({type(exc).__name__}: {one_line(exc)})"
        ) from exc


def state_dict_arrays(payload: Any, where: str) -> dict[str, np.ndarray]:
    """The tensors of a state dict (or of the state dict inside a training checkpoint), checked."""
    tensors = _state_dict(payload, where)
    return {name: array for name, value in tensors.items() if (array := tensor_array(name, value)) is not None}


def _state_dict(payload: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise WeightsImportError(
            f"{where}: holds a {type(payload).__name__}, not a state dict (a mapping of tensor names to tensors)"
        )
    if payload and all(_is_tensor(v) for v in payload.values()):
        return payload
    for key in _STATE_DICT_KEYS:
        inner = payload.get(key)
        if isinstance(inner, Mapping) and inner and all(_is_tensor(v) for v in inner.values()):
            return inner
    odd = next(((k, v) for k, v in payload.items() if not _is_tensor(v)), None)
    what = f"key {odd[0]!r} holds a {type(odd[1]).__name__}" if odd else "it is empty"
    raise WeightsImportError(
        f"{where}: not a state dict ({what}; expected tensors, or a checkpoint with one of {', '.join(_STATE_DICT_KEYS)})"
    )


def _is_tensor(value: Any) -> bool:
    return isinstance(value, np.ndarray) or type(value).__name__ in ("Tensor", "Parameter")


def tensor_array(name: str, value: Any) -> np.ndarray | None:
    """A checked NumPy copy of one state-dict tensor (None for a ``num_batches_tracked`` counter)."""
    if not isinstance(name, str):
        raise WeightsImportError(f"a state dict key is a {type(name).__name__}, not a tensor name")
    if isinstance(value, np.ndarray):
        array = value
    else:
        torch = _torch()
        if value.layout != torch.strided or value.is_quantized:
            raise WeightsImportError(
                f"{name}: a {value.layout} / quantized tensor; weights must be dense {FLOAT_NAMES}"
            )
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()  # NumPy has no bfloat16
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            raise WeightsImportError(f"{name}: dtype {value.dtype}; weights must be {FLOAT_NAMES}")
        array = value.numpy()  # other dtypes (integers, complex, bool) are refused by name below
    if bookkeeping(name):
        if array.dtype.kind not in "iu" or array.size != 1:
            raise WeightsImportError(f"{name}: a batch counter must be one integer, found {array.dtype} {array.shape}")
        return None
    return checked_array(name, array)


def read_safetensors(path: Path, limits: ReadLimits) -> dict[str, np.ndarray]:
    size = check_file(path, limits)
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8:
        raise WeightsImportError(
            f"{path}: truncated ({size} bytes; a safetensors file starts with an 8-byte header length)"
        )
    header = int.from_bytes(head, "little")
    if header > limits.max_header_bytes:
        raise WeightsImportError(f"{path}: declares a {header:,}-byte header (limit {limits.max_header_bytes:,})")
    if header + 8 > size:
        raise WeightsImportError(f"{path}: truncated (its header needs {header + 8:,} bytes, the file has {size:,})")
    try:
        from safetensors import safe_open
    except ImportError:
        raise WeightsImportError(
            "reading .safetensors files needs the safetensors package: pip install safetensors"
        ) from None
    try:
        return _read_tensors(path, limits, safe_open)
    except WeightsImportError:
        raise
    except Exception as exc:  # SafetensorError and the JSON / IO errors under it
        raise WeightsImportError(
            f"{path}: not a readable safetensors file ({type(exc).__name__}: {one_line(exc)})"
        ) from exc


def _read_tensors(path: Path, limits: ReadLimits, safe_open: Any) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="numpy") as handle:
        names = list(handle.keys())
        declared, wide = 0, []
        for name in names:
            info = handle.get_slice(name)
            dtype, shape = info.get_dtype(), tuple(info.get_shape())
            if bookkeeping(name) and dtype in ("I64", "I32") and math.prod(shape) == 1:
                continue
            if dtype not in _SAFETENSORS_DTYPES:
                raise WeightsImportError(f"{name}: dtype {dtype}; weights must be {FLOAT_NAMES}")
            declared += check_shape(name, shape, _SAFETENSORS_DTYPES[dtype])
            if dtype == "BF16":
                wide.append(name)
        check_declared(path, declared, len(names), limits)
        arrays = {n: handle.get_tensor(n) for n in names if n not in wide and not bookkeeping(n)}
    if wide:
        torch = _torch()
        with safe_open(str(path), framework="pt") as handle:
            arrays.update({n: handle.get_tensor(n).to(torch.float32).numpy() for n in wide})
    return {name: checked_array(name, array) for name, array in arrays.items()}
