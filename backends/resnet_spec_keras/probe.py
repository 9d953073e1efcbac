"""The parity probe (:class:`resnet_spec.backends.WeightAccess`): a train-mode forward, its norm
statistics, gradients and a few SGD steps, with the exact semantics every backend shares.

Dropout and drop-path must be the identity while batch norms run in training mode, which no
single ``training=`` flag of a Keras model gives. So the probe re-walks the graph over the
model's own layers (:func:`walk`): each node's layer is called on its inputs, batch norms with
``training=True``, dropout and drop-path with ``training=False``. The layers, and so the
variables, are the model's: the gradient tape sees them and the moving statistics are updated in
place. The walk reproduces the wiring of :mod:`.model` (a ``.pad`` layer runs before its node's
layer; an add's two operands may come in another order, which changes no sum).

This is the TensorFlow engine's probe; :mod:`.probe_jax` is JAX's (same semantics, through
``jax.value_and_grad``). The walk itself is :mod:`.walk`, shared with ``node_outputs``.

The update is written out with TensorFlow ops in PyTorch's form (``b = m * b + g + wd * w`` on
kernels, ``w -= lr * b``), not with ``keras.optimizers.SGD``, whose momentum form
(``v = m * v - lr * g``) differs. Numerics are made deterministic for the probe's duration
(op determinism on, TF32 off; both restored afterwards).

Streaming (:mod:`resnet_spec.parity.stream`): with a ``sink`` every result leaves as soon as it
exists; with ``segments`` the forward runs outside any tape, keeping only the segment
boundaries, and each segment runs again under its own ``GradientTape`` just before its
backward pass (its batch norms' moving statistics are put back afterwards: the first forward
already updated them). Each segment's variables take their SGD step right after its backward,
so only one segment's gradients exist at a time; ``spill`` keeps the momentum buffers on disk
between steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from resnet_spec import graph as g
from resnet_spec.backends import BackendError, ProbeResult
from resnet_spec.parity.stream import CollectingSink, ProbeSink

from .model import deep_recursion
from .walk import LOGITS, layers_of, numpy_copy, run_steps, walk
from .weights import node_variables

if TYPE_CHECKING:
    from resnet_spec.parity.spill import Spill


@contextlib.contextmanager
def strict_numerics() -> Iterator[None]:
    """Deterministic kernels and full float32 matmuls/convolutions (no TF32) while inside.

    TensorFlow's public API can turn op determinism on but not off (``disable_op_determinism``
    lives in ``tensorflow.python.framework.config``); where that module lacks it, determinism is
    left as it is (CPU kernels are deterministic for the ops a ResNet uses)."""
    from tensorflow.python.framework import config as tf_config

    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    query: Any = getattr(tf_config, "is_op_determinism_enabled", None)
    disable: Any = getattr(tf_config, "disable_op_determinism", None)
    toggle = query is not None and disable is not None and not query()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    if toggle:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
        if toggle:
            disable()


def forward(model: keras.Model, arch: Any, images: Any, *, norms_training: bool, dropout: bool) -> dict[str, Any]:
    """Every node's output (tensors, keyed by node name), batch norms and dropout/drop-path each
    in the mode given."""
    values = {arch.graph.input.name: tf.convert_to_tensor(np.asarray(images, np.float32))}
    nodes = [node for node in arch.graph if not isinstance(node, g.Input)]
    return walk(layers_of(model), nodes, values, norms_training=norms_training, dropout=dropout, release=False)


def probe_loss(model: keras.Model, logits: Any, labels: Any) -> Any:
    """Mean softmax cross-entropy of the logits + the kernels' L2 terms.

    Keras' ``L2(l)`` regularizer is exactly ``l * sum(w ** 2)`` and the builder attaches one to
    each kernel with ``kernel_l2 > 0`` (nothing else carries a regularizer), so ``model.losses``
    is the spec's penalty term for term."""
    cross_entropy = _cross_entropy(logits, labels)
    penalties = model.losses
    return cross_entropy + tf.add_n(penalties) if penalties else cross_entropy


def backbone_loss(model: keras.Model, arch: Any, values: Any) -> Any:
    """A backbone's probe loss (no classifier): the sum over its feature outputs of
    ``mean(f ** 2)``, in float64 for a float64 model, else float32, + the kernels' L2 terms."""
    terms = [tf.reduce_mean(tf.square(_at_least_float32(values[n]))) for n in arch.graph.outputs.values()]
    penalties = model.losses
    return tf.add_n(terms + list(penalties))


def objective_nodes(arch: Any) -> frozenset[str]:
    """The nodes the probe's loss reads: a backbone's feature outputs, else the logits."""
    return frozenset(arch.graph.outputs.values()) if arch.graph.outputs else frozenset({LOGITS})


def _at_least_float32(x: Any) -> Any:
    return x if x.dtype == tf.float64 else tf.cast(x, tf.float32)


def _cross_entropy(logits: Any, labels: Any) -> Any:
    labels = tf.convert_to_tensor(labels, tf.int64)
    dtype = tf.float64 if logits.dtype == tf.float64 else tf.float32  # a float64 model keeps float64
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, dtype)))


def train_probe(model: keras.Model, arch: Any, batches: list[tuple[np.ndarray, np.ndarray]], *, steps: int,
                learning_rate: float, momentum: float, weight_decay: float, sink: ProbeSink | None = None,
                segments: Sequence[Sequence[str]] | None = None, spill: Spill | None = None) -> ProbeResult:  # fmt: skip
    """Step 0's forward is the train-mode forward that is reported (outputs, statistics,
    gradients, losses[0]); so after ``steps`` steps the moving statistics have seen exactly
    ``steps`` batches. With ``steps == 0`` that one forward still runs (there is nothing to
    report otherwise) and ``weights_after`` holds its statistics."""
    if not batches:
        raise BackendError("train_probe needs at least one batch")
    if steps < 0:
        raise BackendError(f"steps must be >= 0, got {steps}")
    if arch.graph.outputs and segments and len(segments) > 1:
        raise BackendError("a backbone's probe runs in one segment (its loss reads outputs across segments)")
    collecting = CollectingSink() if sink is None else None
    probe = _Probe(model, arch, sink or collecting, segments, spill)  # type: ignore[arg-type]
    settings = {"lr": learning_rate, "momentum": momentum, "weight_decay": weight_decay}
    with strict_numerics(), deep_recursion(len(model.layers)):
        losses = probe.run(batches, steps, settings)
    result = collecting.result if collecting is not None else ProbeResult({}, {}, {}, {}, [])
    result.losses = losses
    return result


class _Probe:
    """One probe run: the segments, their variables and momentum buffers."""

    def __init__(self, model: keras.Model, arch: Any, sink: ProbeSink, segments: Sequence[Sequence[str]] | None,
                 spill: Spill | None) -> None:  # fmt: skip
        self.model, self.arch, self.sink, self.spill = model, arch, sink, spill
        self.layers = layers_of(model)
        self.variables = node_variables(model, arch)
        nodes = [node for node in arch.graph if not isinstance(node, g.Input)]
        groups = [list(s) for s in segments] if segments else [[node.name for node in nodes]]
        if [n for s in groups for n in s] != [node.name for node in nodes]:
            raise BackendError("probe segments must list every node after the input, in graph order, once")
        self.nodes = [[arch.graph[name] for name in s] for s in groups]
        self.inputs = [arch.graph.input.name] + [s[-1] for s in groups[:-1]]
        self.trainable = [[(name, key, v) for name in s for key, v in self.variables.get(name, {}).items() if v.trainable]
                          for s in groups]  # fmt: skip
        self.norms = [[v for name in s for key, v in self.variables.get(name, {}).items() if key.startswith("moving_")]
                      for s in groups]  # fmt: skip
        self.penalised = [[layer for name in s if (layer := self.layers.get(name)) is not None and layer.losses]
                          for s in groups]  # fmt: skip
        self.buffers: dict[tuple[int, int], Any] = {}

    def run(self, batches: list[tuple[np.ndarray, np.ndarray]], steps: int, settings: dict[str, float]) -> list[float]:
        return run_steps(self, batches, steps, settings, numpy_copy)

    def step(self, images: np.ndarray, labels: np.ndarray, *, first: bool, update: bool, settings: dict[str, float],
             keep_buffers: bool) -> float:  # fmt: skip
        x = tf.convert_to_tensor(np.asarray(images, np.float32))
        emit = (lambda name, value: self.sink.output(name, numpy_copy(value))) if first else None
        if emit is not None:
            emit(self.inputs[0], x)
        every = [node for seg in self.nodes for node in seg]
        if len(self.nodes) == 1:
            with tf.GradientTape() as tape:
                values = walk(self.layers, every, {self.inputs[0]: x}, norms_training=True, dropout=False, emit=emit,
                              keep=objective_nodes(self.arch))  # fmt: skip
                loss = probe_loss(self.model, values[LOGITS], labels) if not self.arch.graph.outputs else \
                    backbone_loss(self.model, self.arch, values)
                del values
            if first:
                self.emit_stats()
            grads = tape.gradient(loss, [v for _, _, v in self.trainable[0]])
            del tape
            self.finish(0, grads, first, update, settings, keep_buffers)
            return float(loss)
        boundaries: dict[str, Any] = {}
        wanted = set(self.inputs[1:])

        def keep_boundaries(name: str, value: Any) -> None:
            if emit is not None:
                emit(name, value)
            if name in wanted:
                boundaries[name] = value

        walk(self.layers, every, {self.inputs[0]: x}, norms_training=True, dropout=False, emit=keep_boundaries)
        if first:
            self.emit_stats()
        boundaries[self.inputs[0]] = x
        upstream, loss = None, None
        for k in reversed(range(len(self.nodes))):
            upstream, grads, value = self.backward(k, boundaries.pop(self.inputs[k]), labels, upstream)
            loss = value if value is not None else loss
            self.finish(k, grads, first, update, settings, keep_buffers)
        return float(loss)

    def backward(self, k: int, start: Any, labels: np.ndarray, upstream: Any) -> tuple[Any, list[Any], Any]:
        """Segment k again under a tape (moving statistics put back after), then its backward from
        ``upstream``; the last segment's target is the loss. Returns (d loss / d its input,
        gradients of its variables, the loss or None)."""
        saved = [tf.identity(v) for v in self.norms[k]]
        last = k == len(self.nodes) - 1
        sources = [v for _, _, v in self.trainable[k]]
        with tf.GradientTape() as tape:
            tape.watch(start)
            values = walk(self.layers, self.nodes[k], {self.inputs[k]: start}, norms_training=True, dropout=False,
                          keep=frozenset({LOGITS}))  # fmt: skip
            if last:
                targets, output_gradients = [probe_loss(self.model, values[LOGITS], labels)], None
            else:
                penalties = [loss for layer in self.penalised[k] for loss in layer.losses]
                targets = [values[self.nodes[k][-1].name]] + ([tf.add_n(penalties)] if penalties else [])
                output_gradients = [upstream] + ([tf.ones((), targets[1].dtype)] if penalties else [])
            del values
        for variable, value in zip(self.norms[k], saved):
            variable.assign(value)
        grads = tape.gradient(targets if not last else targets[0], [start, *sources], output_gradients=output_gradients)
        return grads[0], grads[1:], (targets[0] if last else None)

    def finish(self, k: int, grads: list[Any], first: bool, update: bool, settings: dict[str, float],
               keep_buffers: bool) -> None:  # fmt: skip
        trainable = self.trainable[k]
        grads = [tf.zeros(v.shape, v.dtype) if grad is None else tf.convert_to_tensor(grad)
                 for grad, (_, _, v) in zip(grads, trainable)]  # fmt: skip
        if first:
            found: dict[str, dict[str, np.ndarray]] = {}
            for (name, key, _), grad in zip(trainable, grads):
                found.setdefault(name, {})[key] = grad.numpy()
            for name, entry in found.items():
                self.sink.gradients(name, entry)
        if not update:
            return
        for i, ((_, key, variable), grad) in enumerate(zip(trainable, grads)):
            weight = tf.convert_to_tensor(variable)
            lr, mu, wd = (tf.constant(settings[s], weight.dtype) for s in ("lr", "momentum", "weight_decay"))
            direction = grad + wd * weight if key == "kernel" else grad
            buffer = self.take_buffer(k, i)
            buffer = mu * buffer + direction if buffer is not None else mu * tf.zeros_like(direction) + direction
            variable.assign(weight - lr * buffer)
            if keep_buffers:
                self.put_buffer(k, i, buffer)

    def take_buffer(self, k: int, i: int) -> Any:
        if self.spill is None:
            return self.buffers.pop((k, i), None)
        saved = self.spill.take(f"momentum/{k}/{i}")
        return None if saved is None else tf.convert_to_tensor(saved)

    def put_buffer(self, k: int, i: int, buffer: Any) -> None:
        if self.spill is None:
            self.buffers[(k, i)] = buffer
        else:
            self.spill.put(f"momentum/{k}/{i}", buffer.numpy())

    def emit_stats(self) -> None:
        for name, entry in self.variables.items():
            if "moving_mean" in entry:
                self.sink.stats(name, {key: numpy_copy(entry[key]) for key in ("moving_mean", "moving_variance")})
