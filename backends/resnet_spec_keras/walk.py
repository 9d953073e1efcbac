"""The walk over a Keras model's own layers that the parity probe and ``node_outputs`` share:
each graph node's layer called on its inputs, batch norms and dropout each in the mode asked for
(no single ``training=`` flag of a Keras model gives train-mode norms with identity dropout).
Written with Keras alone, so it runs on every Keras engine (:mod:`.engine`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from resnet_spec import graph as g
from resnet_spec.backends import BackendError

from .model import PAD_SUFFIX

__all__ = ["LOGITS", "last_readers", "layers_of", "numpy_copy", "walk"]

LOGITS = "head.classifier"


def layers_of(model: keras.Model) -> dict[str, Any]:
    return {layer.name: layer for layer in model.layers}


def walk(layers: Mapping[str, Any], nodes: Sequence[g.Node], values: dict[str, Any], *, norms_training: bool,
         dropout: bool, emit: Callable[[str, Any], None] | None = None, keep: frozenset[str] = frozenset(),
         release: bool = True) -> dict[str, Any]:  # fmt: skip
    """Call each node's layer on its inputs (the wiring of :mod:`.model`), ``emit`` seeing every
    output. With ``release`` a value is dropped after its last reader among ``nodes`` unless
    it is in ``keep`` (the graph's output and values read past ``nodes`` stay)."""
    last = last_readers(nodes) if release else {}
    for node in nodes:
        layer = layers.get(node.name)
        if layer is None:
            raise BackendError(f"the model has no layer '{node.name}': it was not built from this architecture")
        inputs = [values[name] for name in node.inputs]
        if isinstance(node, (g.Add, g.Scale)):
            # The add's two operands in graph order: model.py may hand them to the layer in
            # another order, but a sum of two floats is the same either way (IEEE addition commutes).
            out = layer(inputs)
        else:
            x = inputs[0]
            pad = layers.get(node.name + PAD_SUFFIX)
            if pad is not None:
                x = pad(x)
            if isinstance(node, g.BatchNorm):
                out = layer(x, training=norms_training)
            elif isinstance(node, (g.Dropout, g.DropPath)):
                out = layer(x, training=dropout)
            else:
                out = layer(x)
        values[node.name] = out
        if emit is not None:
            emit(node.name, out)
        for name in node.inputs:
            if last.get(name) == node.name and name not in keep:
                values.pop(name, None)
    return values


def last_readers(nodes: Sequence[g.Node]) -> dict[str, str]:
    """Value name -> the last node in ``nodes`` that reads it."""
    return {name: node.name for node in nodes for name in node.inputs}


def numpy_copy(value: Any) -> np.ndarray:
    """A NumPy copy of a tensor or variable (``.numpy()``: NumPy 2's ``np.array`` on a Keras
    variable warns that its ``__array__`` takes no ``copy``)."""
    return np.array(value.numpy() if hasattr(value, "numpy") else keras.ops.convert_to_numpy(value))


def run_steps(probe: Any, batches: Sequence[tuple[np.ndarray, np.ndarray]], steps: int, settings: dict[str, float],
              weight_value: Callable[[Any], np.ndarray]) -> list[float]:  # fmt: skip
    """Parity's SGD steps, the same on every engine: ``probe.step`` per batch (one forward without
    an update when ``steps`` is 0), then every variable's value after them to ``probe.sink``;
    ``weight_value`` reads a variable as NumPy the engine's way."""
    losses: list[float] = []
    for step in range(max(steps, 1)):
        images, labels = batches[step % len(batches)]
        loss = probe.step(images, labels, first=step == 0, update=step < steps, settings=settings,
                          keep_buffers=step + 1 < steps)  # fmt: skip
        if step >= steps:
            break
        losses.append(loss)
    for name, entry in probe.variables.items():
        probe.sink.weights_after(name, {key: weight_value(v) for key, v in entry.items()})
    return losses
