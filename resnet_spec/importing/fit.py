"""Whether one source unit fits one spec node, and its tensors in the neutral layout once it does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import graph as g
from .source import Unit, show_signature
from .target import Slot, flatten_input

if TYPE_CHECKING:
    from ..pipeline import Architecture


class Mismatch(Exception):
    """The first spec node the source does not fit; ``progress`` counts the nodes matched before
    it (the matcher reports the attempt that got furthest)."""

    def __init__(self, message: str, progress: int = 0):
        super().__init__(message)
        self.message = message
        self.progress = progress


def misfit(slot: Slot, unit: Unit) -> str | None:
    """Why ``unit`` cannot give ``slot`` its weights (None when it can)."""
    wanted, found = slot.signature(), unit.signature()
    if slot.excluded:  # a new layer: only its place in the network has to agree
        return None if wanted[0] == found[0] else _different(slot, unit)
    if wanted != found:
        return _different(slot, unit)
    node = slot.node
    if isinstance(node, g.Conv2D):
        if unit.strides is not None and tuple(unit.strides) != tuple(node.strides):
            return (
                f"{slot.name}: the spec's convolution has strides {tuple(node.strides)}, the source's {unit.label} "
                f"{tuple(unit.strides)} (the same weights, but the stride sits elsewhere in the source's block)"
            )
        if unit.groups is not None and unit.groups != node.groups:
            return (
                f"{slot.name}: the spec's convolution has {node.groups} groups, the source's {unit.label} {unit.groups}"
            )
    return None


def _different(slot: Slot, unit: Unit) -> str:
    found_shapes = {k: unit.neutral_shape(k) for k in unit.tensors}
    for key, shape in slot.shapes.items():
        tensor = unit.tensors.get(key)
        if tensor is not None and found_shapes[key] != shape:
            converted = f", {found_shapes[key]} in the neutral layout" if unit.layout == "torch" else ""
            return (
                f"{slot.name}.{key}: expected shape {shape} (neutral layout), the source has {tensor.name} "
                f"{tuple(tensor.value.shape)} there{converted}"
            )
    if unit.signature()[0] == slot.signature()[0] and set(unit.tensors) != set(slot.shapes):
        return (
            f"{slot.name}: expected tensors {', '.join(slot.shapes)}, the source's {unit.label} has "
            f"{', '.join(unit.tensors) or 'none'} ({unit.describe()})"
        )
    return f"{slot.name}: expected {show_signature(slot.signature())}, the source has {unit.label} there ({unit.describe()})"


def neutral_weights(arch: Architecture, slot: Slot, unit: Unit) -> dict[str, np.ndarray]:
    """``unit``'s tensors in the neutral layout of ``slot`` (float32, float64 kept)."""
    node = slot.node
    out: dict[str, np.ndarray] = {}
    spatial = flatten_input(arch, node) if unit.layout == "torch" else None
    for key, shape in slot.shapes.items():
        value = unit.tensors[key].value
        value = value.astype(np.float64 if value.dtype == np.float64 else np.float32, copy=True)
        if key == "kernel":
            if unit.layout == "torch":
                value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
            value = value.reshape(shape)  # a 1x1 conv's (1, 1, in, out) kernel is a dense layer's (in, out)
            if spatial is not None and isinstance(node, g.Dense):
                h, w, c = spatial  # rows of a channels-first flatten run (c, h, w); neutral rows (h, w, c)
                value = value.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(shape)
        elif spatial is not None and isinstance(node, g.BatchNorm):
            h, w, c = spatial
            value = value.reshape(c, h, w).transpose(1, 2, 0).reshape(shape)
        out[key] = np.ascontiguousarray(value)
    return out
