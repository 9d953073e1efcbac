"""The parity probe (:class:`resnet_spec.backends.WeightAccess`): a train-mode forward, its norm
statistics, gradients and a few SGD steps, with the exact semantics every backend shares.

Dropout and drop-path must be the identity while batch norms run in training mode, which no
single ``training=`` flag of a Keras model gives. So the probe re-walks the graph over the
model's own layers (:func:`forward`): each node's layer is called on its inputs, batch norms with
``training=True``, dropout and drop-path with ``training=False``. The layers, and so the
variables, are the model's: the gradient tape sees them and the moving statistics are updated in
place. The walk reproduces the wiring of :mod:`.model` (``Add`` receives (shortcut, branch), a
``.pad`` layer runs before its node's layer).

The update is written out with TensorFlow ops in PyTorch's form (``b = m * b + g + wd * w`` on
kernels, ``w -= lr * b``), not with ``keras.optimizers.SGD``, whose momentum form
(``v = m * v - lr * g``) differs. Numerics are made deterministic for the probe's duration
(op determinism on, TF32 off; both restored afterwards).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from resnet_spec import graph as g
from resnet_spec.backends import BackendError, ProbeResult

from .model import PAD_SUFFIX, deep_recursion
from .weights import get_weights, node_variables

LOGITS = "head.classifier"


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
    layers = {layer.name: layer for layer in model.layers}
    values: dict[str, Any] = {arch.graph.input.name: tf.convert_to_tensor(np.asarray(images, np.float32))}
    for node in arch.graph:
        if isinstance(node, g.Input):
            continue
        layer = layers.get(node.name)
        if layer is None:
            raise BackendError(f"the model has no layer '{node.name}': it was not built from this architecture")
        inputs = [values[name] for name in node.inputs]
        if isinstance(node, g.Add):
            out = layer([inputs[1], inputs[0]])  # (shortcut, branch), as model.py wires it
        elif isinstance(node, g.Scale):
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
    return values


def probe_loss(model: keras.Model, logits: Any, labels: Any) -> Any:
    """Mean softmax cross-entropy of the logits + the kernels' L2 terms.

    Keras' ``L2(l)`` regularizer is exactly ``l * sum(w ** 2)`` and the builder attaches one to
    each kernel with ``kernel_l2 > 0`` (nothing else carries a regularizer), so ``model.losses``
    is the spec's penalty term for term."""
    labels = tf.convert_to_tensor(labels, tf.int64)
    dtype = tf.float64 if logits.dtype == tf.float64 else tf.float32  # a float64 model keeps float64
    cross_entropy = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, dtype))
    )
    penalties = model.losses
    return cross_entropy + tf.add_n(penalties) if penalties else cross_entropy


def train_probe(model: keras.Model, arch: Any, batches: list[tuple[np.ndarray, np.ndarray]], *, steps: int,
                learning_rate: float, momentum: float, weight_decay: float) -> ProbeResult:  # fmt: skip
    """Step 0's forward is the train-mode forward that is reported (outputs, statistics,
    gradients, losses[0]); so after ``steps`` steps the moving statistics have seen exactly
    ``steps`` batches. With ``steps == 0`` that one forward still runs (there is nothing to
    report otherwise) and ``weights_after`` holds its statistics."""
    if not batches:
        raise BackendError("train_probe needs at least one batch")
    if steps < 0:
        raise BackendError(f"steps must be >= 0, got {steps}")
    variables = node_variables(model, arch)
    trainable: list[tuple[str, str, Any]] = [
        (name, key, variable)
        for name, entry in variables.items()
        for key, variable in entry.items()
        if variable.trainable
    ]
    decayed = [key == "kernel" for _, key, _ in trainable]
    buffers = [tf.zeros(variable.shape, variable.dtype) for _, _, variable in trainable]
    result = ProbeResult({}, {}, {}, {}, [])
    with strict_numerics(), deep_recursion(len(model.layers)):
        for step in range(max(steps, 1)):
            images, labels = batches[step % len(batches)]
            with tf.GradientTape() as tape:
                outputs = forward(model, arch, images, norms_training=True, dropout=False)
                loss = probe_loss(model, outputs[LOGITS], labels)
            grads = tape.gradient(loss, [variable for _, _, variable in trainable])
            grads = [tf.zeros(v.shape, v.dtype) if grad is None else tf.convert_to_tensor(grad)
                     for grad, (_, _, v) in zip(grads, trainable)]  # fmt: skip
            if step == 0:
                result.train_outputs = {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}
                result.stats_after_forward = {
                    name: {key: keras.ops.convert_to_numpy(entry[key]) for key in ("moving_mean", "moving_variance")}
                    for name, entry in variables.items()
                    if "moving_mean" in entry
                }
                result.gradients = {}
                for (name, key, _), grad in zip(trainable, grads):
                    result.gradients.setdefault(name, {})[key] = grad.numpy()
            if step >= steps:
                break
            result.losses.append(float(loss))
            for i, ((_, _, variable), grad) in enumerate(zip(trainable, grads)):
                weight = tf.convert_to_tensor(variable)
                lr, mu, wd = (tf.constant(v, weight.dtype) for v in (learning_rate, momentum, weight_decay))
                direction = grad + wd * weight if decayed[i] else grad
                buffers[i] = mu * buffers[i] + direction
                variable.assign(weight - lr * buffers[i])
    result.weights_after = get_weights(model, arch)
    return result
