"""Framework-neutral weights: one layout every backend converts to and from, and seeded
initialization drawn once with NumPy so that both backends start from identical weights.

The neutral layout (the graph's own, channels-last):

* ``Conv2D``: ``kernel`` (kh, kw, in_channels / groups, filters), ``bias`` (filters,)
* ``Dense``: ``kernel`` (in_features, units), rows in the graph's flatten order (h, w, c);
  ``bias`` (units,)
* ``BatchNorm``: ``gamma`` and ``beta`` (when learned), ``moving_mean``, ``moving_variance``

A :data:`Weights` value maps node names to such dicts. Backends implement ``get_weights`` /
``set_weights`` in this layout (Keras' kernels already are; PyTorch transposes conv kernels to
OIHW, dense kernels to (out, in), and permutes dense rows after a flatten from (h, w, c) to its
(c, h, w) order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from . import graph as g

if TYPE_CHECKING:
    from .pipeline import Architecture

Weights = dict[str, dict[str, np.ndarray]]

# Keras' truncated normals cut at 2 std and rescale so the final std is the intended one.
_TRUNCATED_STD_CORRECTION = 0.87962566103423978


def weight_nodes(arch: Architecture) -> Iterator[g.Node]:
    for node in arch.graph:
        if isinstance(node, (g.Conv2D, g.Dense, g.BatchNorm)):
            yield node


def shapes(arch: Architecture) -> dict[str, dict[str, tuple[int, ...]]]:
    """Neutral shapes of every weight, from the analysis (input channels are known there)."""
    result: dict[str, dict[str, tuple[int, ...]]] = {}
    for node in weight_nodes(arch):
        fan = arch.shape_of(node.inputs[0])
        entry: dict[str, tuple[int, ...]]
        if isinstance(node, g.Conv2D):
            kh, kw = node.kernel_size
            entry = {"kernel": (kh, kw, fan[-1] // node.groups, node.filters)}
            if node.use_bias:
                entry["bias"] = (node.filters,)
        elif isinstance(node, g.Dense):
            entry = {"kernel": (math.prod(fan), node.units)}
            if node.use_bias:
                entry["bias"] = (node.units,)
        elif isinstance(node, g.BatchNorm):
            channels = (fan[-1],)
            entry = {"moving_mean": channels, "moving_variance": channels}
            if node.scale:
                entry["gamma"] = channels
            if node.center:
                entry["beta"] = channels
        result[node.name] = entry
    return result


def initial_weights(arch: Architecture, seed: int) -> Weights:
    """Draw every weight once, in graph order, from one seeded generator: the same seed gives
    the same weights whatever backend receives them. Each initializer name means exactly what
    docs/spec-language.md says."""
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, entry in shapes(arch).items():
        node = arch.graph[name]
        values: dict[str, np.ndarray] = {}
        for key, shape in entry.items():
            values[key] = _draw(node, key, shape, entry.get("kernel"), rng)
        out[name] = values
    return out


def _draw(node: g.Node, key: str, shape: tuple[int, ...], kernel_shape: tuple[int, ...] | None,
          rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    if isinstance(node, g.BatchNorm):
        ones = key in ("moving_variance",) or (key == "gamma" and not node.zero_init)
        return np.ones(shape, np.float32) if ones else np.zeros(shape, np.float32)
    initializer = node.initializer  # type: ignore[attr-defined]
    fan_in, fan_out = _fans(node, kernel_shape)
    if key == "bias":
        if initializer == "torch_default":
            bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
            return rng.uniform(-bound, bound, shape).astype(np.float32)
        return np.zeros(shape, np.float32)
    return _kernel(initializer, shape, fan_in, fan_out, rng)


def _fans(node: g.Node, kernel_shape: tuple[int, ...] | None) -> tuple[int, int]:
    if isinstance(node, g.Dense):
        shape = kernel_shape or (0, 0)
        return shape[0], shape[1]
    assert isinstance(node, g.Conv2D)  # weight_nodes yields only conv, dense, norm
    kh, kw = node.kernel_size
    # Both frameworks: fan_in = kh*kw*in/groups, fan_out = kh*kw*filters (not divided by groups).
    in_per_group = kernel_shape[2] if kernel_shape else 0
    return kh * kw * in_per_group, kh * kw * node.filters


def _kernel(name: str, shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    if name == "zeros":
        return np.zeros(shape, np.float32)
    if name == "he_normal":
        return _truncated(rng, math.sqrt(2.0 / fan_in), shape)
    if name == "glorot_normal":
        return _truncated(rng, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if name == "lecun_normal":
        return _truncated(rng, math.sqrt(1.0 / fan_in), shape)
    if name == "kaiming_normal":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)
    if name == "kaiming_normal_fan_out":
        return rng.normal(0.0, math.sqrt(2.0 / fan_out), shape).astype(np.float32)
    if name == "he_uniform":
        bound = math.sqrt(6.0 / fan_in)
    elif name == "glorot_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
    elif name == "torch_default":
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5))
    else:
        raise ValueError(f"unknown initializer {name!r}")  # the schema admits no other name
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def _truncated(rng: np.random.Generator, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal cut at 2 std (redrawn outside), std corrected as Keras does."""
    scale = std / _TRUNCATED_STD_CORRECTION
    values = rng.normal(0.0, 1.0, shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.normal(0.0, 1.0, int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * scale).astype(np.float32)
