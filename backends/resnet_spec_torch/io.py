"""Saving and loading: one self-describing ``.pt`` file.

The file is a plain dict that ``torch.load(weights_only=True)`` accepts (no pickled classes, so
loading a file never runs code from it)::

    {"format": "resnet-spec/torch", "format_version": 1, "resnet_spec_version": "...",
     "spec": {...the spec as JSON data...}, "hash": "sha256:...", "state_dict": {...}}

Loading rebuilds the network from the stored spec and refuses the file when that spec no longer
compiles to the stored architecture hash (an edited file, or an expansion that changed between
versions): the weights would otherwise be loaded into a different network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnet_spec import __version__
from resnet_spec.atomic import atomic_path
from resnet_spec.backends import BackendError
from resnet_spec.diagnostics import SpecError
from resnet_spec.pipeline import build_architecture

from .introspect import unwrap
from .model import ResNet, build_module

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture

FORMAT = "resnet-spec/torch"
FORMAT_VERSION = 1


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
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "resnet_spec_version": __version__,
        "spec": _plain(spec_data),
        "hash": arch.hash,
        # Contiguous CPU tensors: the file does not depend on the device or memory format used.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise BackendError(f"{path}: not a loadable resnet-spec PyTorch file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BackendError(f"{path}: not a resnet-spec PyTorch file (no '{FORMAT}' format marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise BackendError(
            f"{path}: file format version {payload.get('format_version')!r} is not supported "
            f"(this resnet-spec {__version__} reads version {FORMAT_VERSION})"
        )
    return payload


def load(path: Path) -> tuple[ResNet, dict[str, Any]]:
    payload = read(Path(path))
    try:
        arch = build_architecture(payload["spec"], filename=f"{path} (stored spec)")
    except SpecError as exc:
        raise BackendError(f"{path}: the stored spec no longer validates:\n{exc}") from exc
    if arch.hash != payload["hash"]:
        raise BackendError(
            f"{path}: the stored spec compiles to architecture {arch.hash} but the weights were saved "
            f"for {payload['hash']} (file edited, or saved by resnet-spec {payload.get('resnet_spec_version')} "
            "whose expansion differs); refusing to load weights into a different network"
        )
    model = build_module(arch)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise BackendError(f"{path}: the weights do not fit the architecture: {exc}") from exc
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta
