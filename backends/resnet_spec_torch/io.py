"""Saving and loading: one self-describing ``.pt`` file.

The file is a plain dict that ``torch.load(weights_only=True)`` accepts (no pickled classes, so
loading a file never runs code from it)::

    {"format": "resnet-spec/torch", "format_version": 2, "resnet_spec_version": "...",
     "spec": {...the spec as JSON data...}, "hash": "sha256:...", "state_dict": {...},
     "integrity": {"algorithm": "sha256", "parts": {"header": ..., "spec": ...}, "tensors": {...}}}

Loading, in this order, never inflating or allocating more than the file declares
(:mod:`resnet_spec.integrity`): the path must be a regular file (a FIFO or a directory is never
opened); the zip members may declare no more bytes than the file holds (``torch.save`` stores
them uncompressed, so more is a zip bomb); then the restricted unpickler; the stored spec must be
a mapping and compile to the stored architecture hash; every tensor must be finite floating
point (running variances >= 0) with the name and shape the spec's graph gives; and the digests
must match (version 1 files have none: they load, and the metadata says so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnet_spec import __version__, integrity
from resnet_spec.atomic import atomic_path
from resnet_spec.backends import BackendError
from resnet_spec.diagnostics import SpecError
from resnet_spec.importing.read_torch import read_pth, tensor_array
from resnet_spec.importing.safety import ReadLimits, WeightsImportError
from resnet_spec.pipeline import build_architecture

from .introspect import unwrap
from .model import ResNet, build_module

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture

FORMAT = "resnet-spec/torch"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: the same file without its integrity record
_HEADER = ("format", "format_version", "resnet_spec_version", "hash")


def _plain(spec_data: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as JSON data (what ``weights_only`` loading accepts and what the hash is rebuilt from)."""
    try:
        return json.loads(json.dumps(dict(spec_data), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BackendError(f"the spec cannot be stored as JSON data: {exc}") from exc


def save(model: nn.Module, arch: Architecture, spec_data: Mapping[str, Any], path: Path) -> None:
    net = unwrap(model)
    if isinstance(net, ResNet) and net.arch_hash != arch.hash:
        raise BackendError(
            f"the model was built from architecture {net.arch_hash}, not from the given one ({arch.hash})"
        )
    # Contiguous CPU tensors: the file does not depend on the device or memory format used.
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    _check_state(Path(path), state)  # never write a file load() would refuse (NaN, negative variances)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "resnet_spec_version": __version__,
        "spec": _plain(spec_data),
        "hash": arch.hash,
        "state_dict": state,
    }
    payload["integrity"] = integrity.record(_parts(payload), {k: tensor_digest(v) for k, v in state.items()})
    # Through a handle: torch then names the archive's folder "archive", not after the temporary file.
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        torch.save(payload, handle)


def tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return integrity.digest_array(str(tensor.dtype).removeprefix("torch."), tensor.shape, data.data)


def _parts(payload: Mapping[str, Any], where: str = "the model") -> dict[str, str]:
    """Digests of the model description: the header fields and the stored spec."""
    try:
        return {
            "header": integrity.digest_data({key: payload.get(key) for key in _HEADER}),
            "spec": integrity.digest_data(payload["spec"]),
        }
    except (TypeError, ValueError, RecursionError) as exc:
        raise BackendError(f"{where}: its header or spec is not JSON data ({type(exc).__name__})") from None


def read(path: Path) -> dict[str, Any]:
    """The file's payload, its structure and every tensor checked (the spec not yet compiled)."""
    path = Path(path)
    size = integrity.regular_file(path, "PyTorch model")
    _check_members(path, size)
    payload = read_pth(path, ReadLimits(max_bytes=max(size, 1)))
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BackendError(f"{path}: not a resnet-spec PyTorch file (no '{FORMAT}' format marker)")
    if payload.get("format_version") not in READABLE_VERSIONS:
        raise BackendError(
            f"{path}: file format version {payload.get('format_version')!r} is not supported "
            f"(this resnet-spec {__version__} reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    integrity.stored_spec(payload.get("spec"), str(path))
    integrity.stored_hash(payload.get("hash"), str(path))
    _check_state(path, payload.get("state_dict"))
    return payload


def _check_members(path: Path, size: int) -> None:
    """``torch.save`` stores members uncompressed: together they never declare more than the file."""
    with path.open("rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            return  # not a zip: read_pth says what it is
    members = integrity.zip_members(path, "PyTorch model")
    integrity.check_inflated(path, members.values(), size, "the file holds (torch.save stores members uncompressed)")


def _check_state(path: Path, state: Any) -> None:
    if not isinstance(state, dict) or not state:
        found = "missing" if state is None else f"a {type(state).__name__}" + (" (empty)" if isinstance(state, dict) else "")
        raise BackendError(f"{path}: its state_dict is {found}, expected a mapping of tensor names to tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            what = f"key {name!r}" if isinstance(name, str) else f"a {type(name).__name__} key"
            raise BackendError(f"{path}: state_dict {what} holds a {type(value).__name__}, expected a tensor")
        try:
            array = tensor_array(name, value)  # dtype, dimensions, finiteness (None: a batch counter)
            if array is not None:
                integrity.check_tensor(name, array)
        except WeightsImportError as exc:
            raise BackendError(f"{path}: tensor {exc}") from None


def load(path: Path) -> tuple[ResNet, dict[str, Any]]:
    path = Path(path)
    payload = read(path)
    arch = _architecture(path, payload)
    state = payload["state_dict"]
    status = integrity.verify(
        str(path), payload.get("integrity"), _parts(payload, str(path)), {k: tensor_digest(v) for k, v in state.items()},
        required=payload["format_version"] >= 2,
    )
    model = build_module(arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    integrity.check_shapes(str(path), expected, {k: tuple(v.shape) for k, v in state.items()})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackendError(f"{path}: the weights do not fit the architecture: {' '.join(str(exc).split())[:300]}") from exc
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "integrity")}
    meta["integrity"] = status
    return model, meta


def _architecture(path: Path, payload: Mapping[str, Any]) -> Architecture:
    try:
        arch = build_architecture(payload["spec"], filename=f"{path} (stored spec)")
    except SpecError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise BackendError(f"{path}: the stored spec no longer validates: {first}") from exc
    if arch.hash != payload["hash"]:
        raise BackendError(
            f"{path}: the stored spec compiles to architecture {arch.hash} but the weights were saved "
            f"for {payload['hash']} (file edited, or saved by resnet-spec {payload.get('resnet_spec_version')} "
            "whose expansion differs); refusing to load weights into a different network"
        )
    return arch
