"""An in-memory functional or ``Sequential`` ``keras.Model`` as a graph source.

A functional model is its graph: every tensor knows the layer call that made it
(``_keras_history``) and every call its input tensors. The graph is walked from the outputs
back to the inputs without recursion (deep nets have thousands of calls); a nested model (the
``keras.applications`` base inside a fine-tuning model) is inlined, its inputs bound to the
outer tensors it is called on. Nothing runs.

A weighted layer is a ``Conv2D`` (its strides and groups recorded), a ``BatchNormalization``
over the last axis or a ``Dense``; an ``Add`` / ``Multiply`` layer or op of two inputs is a
merge. Any other layer with weights, a layer called twice, or a subclassed model (no graph to
read) is an error naming it.
"""

from __future__ import annotations

from typing import Any

from .read_torch import tensor_array
from .safety import WeightsImportError
from .source import GraphOp, GraphSource, SourceTensor, Unit, split_name

_NORM_KEYS = ("gamma", "beta", "moving_mean", "moving_variance")


def graph_of_model(model: Any, description: str) -> GraphSource:
    import keras

    builder = _Builder(keras)
    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        raise WeightsImportError(
            f"the Keras model has {len(inputs)} inputs; only built functional or Sequential models with one input have a graph to read"
        )
    outputs = builder.model(model, [0], ())
    if len(outputs) != 1:
        raise WeightsImportError(f"the Keras model has {len(outputs)} outputs; a spec's network has one")
    return GraphSource(description, builder.ops, outputs[0], builder.units)


class _Builder:
    def __init__(self, keras: Any):
        self.keras = keras
        self.ops: list[GraphOp] = [GraphOp("input", (), "input")]
        self.units: list[Unit] = []
        self.seen: set[int] = set()

    def model(self, model: Any, inputs: list[int], prefix: tuple[str, ...]) -> list[int]:
        if isinstance(model, self.keras.Sequential):
            current = inputs
            for layer in model.layers:
                current = self.call(layer, current, (*prefix, model.name))
            return current
        env = {id(t): op for t, op in zip(model.inputs, inputs)}
        for layer, node in _calls(model):
            results = self.call(layer, [env[id(t)] for t in node.input_tensors], (*prefix, model.name))
            for tensor, op in zip(node.output_tensors, results):
                env[id(tensor)] = op
        return [env[id(t)] for t in model.outputs]

    def call(self, layer: Any, inputs: list[int], prefix: tuple[str, ...]) -> list[int]:
        keras = self.keras
        if isinstance(layer, keras.Model):
            return self.model(layer, inputs, prefix)
        if id(layer) in self.seen and layer.weights:
            raise WeightsImportError(
                f"layer '{layer.name}' is called twice (shared weights); each spec layer has its own"
            )
        self.seen.add(id(layer))
        name = type(layer).__name__
        label = "/".join((*prefix[1:], layer.name))
        unit = self.unit(layer, label)
        if unit is not None:
            if len(inputs) != 1:
                raise WeightsImportError(f"{label}: a weighted layer with {len(inputs)} inputs")
            self.units.append(unit)
            op = GraphOp(unit.kind, tuple(inputs), label, unit=unit)
        elif layer.weights:
            raise WeightsImportError(
                f"{label}: a {name} layer with weights; a spec holds convolutions, dense layers and batch norms"
            )
        elif name in ("Add", "Multiply") and len(inputs) == 2:
            op = GraphOp("add" if name == "Add" else "mul", tuple(inputs), label)
        else:
            op = GraphOp("other", tuple(inputs), label)
        self.ops.append(op)
        return [len(self.ops) - 1]

    def unit(self, layer: Any, label: str) -> Unit | None:
        layers = self.keras.layers
        path = split_name(label, "._/")
        if isinstance(layer, layers.Conv2D):
            config = layer.get_config()
            if config.get("data_format", "channels_last") != "channels_last" or tuple(
                config.get("dilation_rate", (1, 1))
            ) != (1, 1):
                raise WeightsImportError(f"{label}: a channels-first or dilated convolution; not a spec layer")
            tensors = self.tensors(label, {"kernel": layer.kernel, "bias": layer.bias if layer.use_bias else None})
            strides = tuple(int(s) for s in config["strides"])
            return Unit(
                "conv",
                label,
                path,
                tensors,
                "neutral",
                strides=(strides[0], strides[-1]),
                groups=int(config.get("groups", 1)),
            )
        if isinstance(layer, layers.BatchNormalization):
            if layer.axis not in (-1, 3):
                raise WeightsImportError(
                    f"{label}: a batch norm over axis {layer.axis}; a spec normalizes channels (the last axis)"
                )
            variables = {key: getattr(layer, key, None) for key in _NORM_KEYS}
            return Unit("norm", label, path, self.tensors(label, variables), "neutral", epsilon=float(layer.epsilon))
        if isinstance(layer, layers.Dense):
            return Unit(
                "dense", label, path, self.tensors(label, {"kernel": layer.kernel, "bias": layer.bias}), "neutral"
            )
        return None

    def tensors(self, label: str, variables: dict[str, Any]) -> dict[str, SourceTensor]:
        out = {}
        for key, variable in variables.items():
            if variable is None:
                continue
            name = f"{label}/{key}"
            array = tensor_array(name, self.keras.ops.convert_to_numpy(variable))
            assert array is not None
            out[key] = SourceTensor(name, array.copy())
        return out


def _calls(model: Any) -> list[tuple[Any, Any]]:
    """(layer, call node) of a functional model in topological order, by an iterative walk."""
    inputs = {id(t) for t in model.inputs}
    order: list[tuple[Any, Any]] = []
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(t, False) for t in reversed(model.outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in inputs:
            continue
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            raise WeightsImportError("a Keras model tensor without a graph history: a subclassed model cannot be read")
        layer, index = history[0], history[1]
        node = layer._inbound_nodes[index]
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append((layer, node))
            continue
        stack.append((tensor, True))
        stack.extend((t, False) for t in node.input_tensors if id(t) not in inputs)
    return order
