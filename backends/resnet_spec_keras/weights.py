"""Weights in the neutral layout of :mod:`resnet_spec.weights`, matched by layer and variable
name (never by position).

Keras already stores the neutral layout: conv kernels (kh, kw, in / groups, out), dense kernels
(in, out) with rows in NHWC flatten order (h, w, c), and batch norm variables named ``gamma``,
``beta``, ``moving_mean`` and ``moving_variance``. So conversion is only a lookup: the layer is
``model.get_layer(node.name)`` and the key is the variable's own name (``kernel``, ``bias``,
``gamma``, ...), which is what the neutral dicts use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from resnet_spec.backends import BackendError
from resnet_spec.weights import Weights, shapes


def node_variables(model: keras.Model, arch: Any) -> dict[str, dict[str, Any]]:
    """``{node: {key: keras.Variable}}`` for every weight node of the architecture, checked
    against the neutral shapes (a missing layer, a missing or extra variable, or a shape that
    differs means the model was not built from this architecture)."""
    expected = shapes(arch)
    layers = {layer.name: layer for layer in model.layers}
    found: dict[str, dict[str, Any]] = {}
    for name, entry in expected.items():
        layer = layers.get(name)
        if layer is None:
            raise BackendError(f"the model has no layer '{name}': it was not built from this architecture")
        variables = {variable.name: variable for variable in layer.weights}
        if set(variables) != set(entry):
            raise BackendError(f"layer '{name}' holds {sorted(variables)}, the architecture expects {sorted(entry)}")
        for key, shape in entry.items():
            if tuple(variables[key].shape) != tuple(shape):
                raise BackendError(
                    f"{name}.{key}: the model's shape is {tuple(variables[key].shape)}, the architecture's {tuple(shape)}"
                )
        found[name] = variables
    return found


def get_weights(model: keras.Model, arch: Any) -> Weights:
    return {
        name: {key: np.array(keras.ops.convert_to_numpy(variable)) for key, variable in entry.items()}
        for name, entry in node_variables(model, arch).items()
    }


def set_weights(model: keras.Model, arch: Any, weights: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Assign every weight; refuse missing, unknown or misshapen entries before assigning any.

    The values are read again for the assignment, node by node, rather than held converted
    from the check to the end: a float64 ResNet-152 would otherwise hold a second copy of its
    0.5 GB of weights (``weights`` may be a mapping that loads each node from disk)."""
    variables = node_variables(model, arch)
    unknown = sorted(set(weights) - set(variables))
    if unknown:
        raise BackendError(f"weights given for nodes the architecture has no weights for: {', '.join(unknown[:5])}")
    for name, entry in variables.items():
        given = weights.get(name)
        if given is None:
            raise BackendError(f"no weights given for '{name}' (every weight of the model must be given)")
        if set(given) != set(entry):
            raise BackendError(f"{name}: weights given for {sorted(given)}, the model holds {sorted(entry)}")
        for key, variable in entry.items():
            shape = np.shape(given[key])
            if shape != tuple(variable.shape):
                raise BackendError(f"{name}.{key}: given shape {shape}, the model's {tuple(variable.shape)}")
    for name, entry in variables.items():
        given = weights[name]
        for key, variable in entry.items():
            variable.assign(np.asarray(given[key]).astype(variable.dtype, copy=False))
