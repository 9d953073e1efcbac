"""The parity probe on Keras' JAX engine: the semantics of :mod:`.probe` (the TensorFlow one),
computed the JAX way.

JAX has no gradient tape: a gradient is ``jax.value_and_grad`` of a pure function. The function
here is the probe's train-mode forward (:func:`.walk.walk` over the model's own layers, batch
norms in training mode, dropout and drop-path the identity) plus the loss, run inside a
``keras.StatelessScope`` that maps every model variable to the value passed in: the layers
read those values, the batch norms' moving-statistics updates are recorded in the scope instead
of assigned, and the function returns them (what ``Layer.stateless_call`` does for one layer).
After each step the new statistics and the SGD step (PyTorch's form, as in :mod:`.probe`:
``b = m * b + g + wd * w`` on kernels, ``w -= lr * b``) are assigned to the model's variables.

Streaming: a ``sink`` receives every result as in :mod:`.probe`, and ``spill`` keeps the
momentum buffers on disk between steps. ``segments`` (gradient checkpointing) is accepted and
not used: the forward and backward run whole, so a lean run on JAX holds one full forward's
activations. Matrix products run at full float32 precision (``jax.default_matmul_precision``:
no TF32 on a GPU); JAX's CPU kernels are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from resnet_spec import graph as g
from resnet_spec.backends import BackendError, ProbeResult
from resnet_spec.parity.stream import CollectingSink, ProbeSink

from .model import deep_recursion
from .walk import LOGITS, layers_of, run_steps, walk
from .weights import node_variables

if TYPE_CHECKING:
    from resnet_spec.parity.spill import Spill


def train_probe(model: keras.Model, arch: Any, batches: list[tuple[np.ndarray, np.ndarray]], *, steps: int,
                learning_rate: float, momentum: float, weight_decay: float, sink: ProbeSink | None = None,
                segments: Sequence[Sequence[str]] | None = None, spill: Spill | None = None) -> ProbeResult:  # fmt: skip
    """As :func:`.probe.train_probe`: step 0's forward is the one reported; after ``steps``
    steps the moving statistics have seen exactly ``steps`` batches; ``steps == 0`` still runs
    that one forward."""
    if not batches:
        raise BackendError("train_probe needs at least one batch")
    if steps < 0:
        raise BackendError(f"steps must be >= 0, got {steps}")
    collecting = CollectingSink() if sink is None else None
    probe = _Probe(model, arch, sink or collecting, spill)  # type: ignore[arg-type]
    settings = {"lr": learning_rate, "momentum": momentum, "weight_decay": weight_decay}
    with jax.default_matmul_precision("highest"), deep_recursion(len(model.layers)):
        losses = probe.run(batches, steps, settings)
    result = collecting.result if collecting is not None else ProbeResult({}, {}, {}, {}, [])
    result.losses = losses
    return result


def cross_entropy(logits: Any, labels: Any) -> Any:
    """Mean softmax cross-entropy, in float64 for a float64 model, else float32."""
    logits = logits if logits.dtype == jnp.float64 else logits.astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.asarray(labels)[:, None], axis=-1)[:, 0]
    return -jnp.mean(picked)


def backbone_loss(arch: Any, values: Any) -> Any:
    """A backbone's loss (no classifier): the sum over its feature outputs of ``mean(f ** 2)``,
    in float64 for a float64 model, else float32."""
    terms = [jnp.mean(jnp.square(v if (v := values[n]).dtype == jnp.float64 else v.astype(jnp.float32)))
             for n in arch.graph.outputs.values()]  # fmt: skip
    return sum(terms[1:], terms[0])


class _Probe:
    """One probe run: the model's variables as arrays, the pure forward, the momentum buffers."""

    def __init__(self, model: keras.Model, arch: Any, sink: ProbeSink, spill: Spill | None) -> None:
        self.model, self.arch, self.sink, self.spill = model, arch, sink, spill
        self.layers = layers_of(model)
        self.variables = node_variables(model, arch)
        self.nodes = [node for node in arch.graph if not isinstance(node, g.Input)]
        self.trainable = list(model.trainable_variables)
        self.others = list(model.non_trainable_variables)  # moving statistics, seed states
        where = {id(v): i for i, v in enumerate(self.trainable)}
        # (node, key, index into self.trainable), in node order: what gradients are reported for.
        self.reported = [(name, key, where[id(v)]) for name, entry in self.variables.items()
                         for key, v in entry.items() if v.trainable]  # fmt: skip
        self.buffers: dict[int, Any] = {}
        self.gradient = jax.value_and_grad(self.forward, has_aux=True)
        # what the loss reads: a backbone's feature outputs, else the logits
        self.reads = frozenset(arch.graph.outputs.values()) if arch.graph.outputs else frozenset({LOGITS})

    def forward(self, trainable: list[Any], others: list[Any], images: Any, labels: Any,
                record: bool) -> tuple[Any, tuple[list[Any], dict[str, Any]]]:  # fmt: skip
        """(loss, (the non-trainable values after the forward, every node's output if ``record``))."""
        mapping = list(zip(self.trainable, trainable)) + list(zip(self.others, others))
        outputs: dict[str, Any] = {}
        emit = outputs.__setitem__ if record else None
        with keras.StatelessScope(state_mapping=mapping) as scope:
            values = walk(self.layers, self.nodes, {self.arch.graph.input.name: images}, norms_training=True,
                          dropout=False, emit=emit, keep=self.reads)  # fmt: skip
            loss = cross_entropy(values[LOGITS], labels) if not self.arch.graph.outputs else backbone_loss(self.arch, values)
            # Keras' L2(l) is l * sum(w ** 2), one per kernel with kernel_l2 > 0; read in the scope,
            # model.losses computes them from the mapped (traced) values.
            penalties = self.model.losses
            if penalties:
                loss = loss + sum(penalties[1:], penalties[0])
            updated = [scope.get_current_value(v) for v in self.others]
        return loss, (updated, outputs)

    def run(self, batches: list[tuple[np.ndarray, np.ndarray]], steps: int, settings: dict[str, float]) -> list[float]:
        return run_steps(self, batches, steps, settings, lambda variable: _numpy(variable.value))

    def step(self, images: np.ndarray, labels: np.ndarray, *, first: bool, update: bool, settings: dict[str, float],
             keep_buffers: bool) -> float:  # fmt: skip
        x = jnp.asarray(np.asarray(images, np.float32))
        weights = [v.value for v in self.trainable]
        (loss, (updated, outputs)), grads = self.gradient(weights, [v.value for v in self.others], x,
                                                          jnp.asarray(np.asarray(labels, np.int32)), first)  # fmt: skip
        for variable, value in zip(self.others, updated):
            variable.assign(value)
        if first:
            self.sink.output(self.arch.graph.input.name, np.asarray(images, np.float32))
            for name, value in outputs.items():
                self.sink.output(name, _numpy(value))
            del outputs
            self.emit_stats()
            found: dict[str, dict[str, np.ndarray]] = {}
            for name, key, i in self.reported:
                found.setdefault(name, {})[key] = _numpy(grads[i])
            for name, entry in found.items():
                self.sink.gradients(name, entry)
        if update:
            self.sgd(weights, grads, settings, keep_buffers)
        return float(loss)

    def sgd(self, weights: list[Any], grads: list[Any], settings: dict[str, float], keep_buffers: bool) -> None:
        kernels = {i for _, key, i in self.reported if key == "kernel"}
        for i, (variable, weight, grad) in enumerate(zip(self.trainable, weights, grads)):
            lr, mu, wd = (jnp.asarray(settings[s], weight.dtype) for s in ("lr", "momentum", "weight_decay"))
            direction = grad + wd * weight if i in kernels else grad
            buffer = self.take_buffer(i)
            buffer = mu * buffer + direction if buffer is not None else mu * jnp.zeros_like(direction) + direction
            variable.assign(weight - lr * buffer)
            if keep_buffers:
                self.put_buffer(i, buffer)

    def take_buffer(self, i: int) -> Any:
        if self.spill is None:
            return self.buffers.pop(i, None)
        saved = self.spill.take(f"momentum/{i}")
        return None if saved is None else jnp.asarray(saved)

    def put_buffer(self, i: int, buffer: Any) -> None:
        if self.spill is None:
            self.buffers[i] = buffer
        else:
            self.spill.put(f"momentum/{i}", _numpy(buffer))

    def emit_stats(self) -> None:
        for name, entry in self.variables.items():
            if "moving_mean" in entry:
                self.sink.stats(name, {key: _numpy(entry[key].value) for key in ("moving_mean", "moving_variance")})


def _numpy(value: Any) -> np.ndarray:
    return np.array(value)
