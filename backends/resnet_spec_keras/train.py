"""The Keras training session: :class:`resnet_spec.training.job.TrainingSession` for TensorFlow /
Keras 3; the loop that drives it is the core's (:mod:`resnet_spec.training.loop`).

It follows the session contract of :mod:`resnet_spec.training.job`, as the PyTorch session does:

* start: the job's start weights (the seeded neutral initial weights of
  :func:`resnet_spec.weights.initial_weights` with ``training.seed``, imported ones in their
  place: the same start as the PyTorch trainer); frozen nodes' layers ``trainable = False``
  (Keras 3: a frozen batch norm uses and keeps its moving statistics); dropout/drop-path seed
  states derived from the seed;
* input: a training split held in memory that needs no resizing is preprocessed once and sliced
  on the host; anything else streams through ``tf.data`` (:mod:`.pipeline`), each worker reading
  only its replicas' shards of every global batch (``distribute_datasets_from_function`` under a
  strategy); pad-and-crop and flips happen on the device inside the step (:mod:`.augment`) with
  the plan's numbers; the learning rate is fed to the step as a tensor (no Keras schedule, whose
  boundaries count differently);
* loss: cross-entropy with label smoothing on ``head.classifier``'s logits (float32, also under
  mixed precision; a softmax output layer is not part of the training model) + the kernels' L2
  terms (``model.losses``); update: :class:`.optim.TorchFormOptimizer` (PyTorch's SGD/Nesterov,
  Adam, AdamW forms);
* checkpoint files: :mod:`.checkpoint`.

Reported numbers: the training ``loss`` is the mean label-smoothed cross-entropy of the epoch's
training batches in training mode (without the L2 term); ``val_loss`` and the test loss are
plain cross-entropy (no smoothing) in inference mode. Execution switches, strategies and
multi-worker training: :mod:`.execution`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from resnet_spec.training.augment import enabled as augmentation_enabled
from resnet_spec.training.errors import TrainingError
from resnet_spec.training.geometry import Geometry
from resnet_spec.training.job import Predictions, TrainingJob
from resnet_spec.training.sources import Split

from . import augment, pipeline
from .checkpoint import OPTIMIZER, RANDOM, WEIGHTS
from .execution import resolve, split
from .inference import Inference, logits_model
from .model import build_model, deep_recursion
from .optim import TorchFormOptimizer
from .weights import set_weights


def seed_layers(model: keras.Model) -> list[Any]:
    """Layers with a random state (Dropout, DropPath), in model order."""
    return [layer for layer in model.layers if getattr(layer, "seed_generator", None) is not None]


def reset_seeds(model: keras.Model, seed: int) -> None:
    """Give every random layer a state derived from the run's seed (Keras would draw one from
    Python's global generator), so dropout masks are reproducible."""
    for index, layer in enumerate(seed_layers(model)):
        state = layer.seed_generator.state
        value = np.random.default_rng([seed, 104729, index]).integers(0, 2**31 - 1)
        state.assign(np.array([value, 0], dtype=state.dtype))


def freeze(model: keras.Model, nodes: frozenset[str]) -> None:
    """The frozen nodes' layers stop training: no gradients, and (Keras 3) a batch norm that is
    not trainable normalizes with its moving statistics and never updates them."""
    for layer in model.layers:
        if layer.name in nodes:
            layer.trainable = False


def head_variables(model: keras.Model, nodes: frozenset[str]) -> list[str]:
    """Paths of the trainable variables of the head's layers (their own learning rate)."""
    return [v.path for layer in model.layers if layer.name in nodes for v in layer.trainable_weights]


def cross_entropy(logits: Any, labels: Any, smoothing: float) -> Any:
    """Per-example cross-entropy with label smoothing (PyTorch's definition: (1 - s) * NLL +
    s * mean over classes of -log p)."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    nll = -tf.gather(log_probs, labels, axis=-1, batch_dims=1)
    if not smoothing:
        return nll
    return (1.0 - smoothing) * nll - smoothing * tf.reduce_mean(log_probs, axis=-1)


class KerasSession:
    """One training run of the Keras backend: model, optimizer, compiled step, input, metric sums."""

    backend = "keras"

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.setup = setup = resolve(job.execution, job.extra)
        self.rank, self.world, self.notes = setup.worker, setup.workers, setup.notes
        self._scope = contextlib.ExitStack()
        self._scope.enter_context(setup.scope())
        try:
            self._build(job)
        except BaseException:
            self._scope.close()
            raise

    def _build(self, job: TrainingJob) -> None:
        setup, training, arch, self.plan = self.setup, job.training, job.arch, job.plan
        if setup.distributed and self.plan.smallest_batch() < setup.replicas:
            raise TrainingError(f"a batch of {self.plan.smallest_batch()} examples cannot be split over "
                                f"{setup.replicas} replicas; use fewer or another batch size")  # fmt: skip
        with setup.policy_scope():
            self.model = build_model(arch)
        set_weights(self.model, arch, job.start_weights())
        freeze(self.model, job.frozen)
        reset_seeds(self.model, training.seed)
        self.train_model = logits_model(self.model)
        inner = TorchFormOptimizer.from_settings(training.optimizer, head_variables(self.model, job.head))
        self.optimizer = (
            keras.optimizers.LossScaleOptimizer(inner, name="loss_scale") if setup.policy == "mixed_float16" else inner
        )
        self.optimizer.build(self.train_model.trainable_variables)
        self.sums = tf.Variable(tf.zeros(3, tf.float64), trainable=False)  # loss sum, correct, examples
        self.geometry = job.geometry(job.train, train=True)
        self.memory: tuple[np.ndarray, np.ndarray] | None = None
        if job.train.in_memory and self.geometry.mode == "none":
            self.memory = job.preprocessor(job.train.read(np.arange(len(job.train)))), job.train.labels
        workers = job.execution.workers
        self.workers = workers if workers is not None else pipeline.default_workers(job.train, self.geometry)
        self.augment = augmentation_enabled(training.augmentation)
        self._train_step = self._make_train_step()
        self.inference = Inference(self.model, job.preprocessor, batch=training.batch_size, workers=workers)
        self._loss: Any = None

    # -------------------------------------------------------------- the compiled step

    def _make_train_step(self) -> Any:
        """The compiled step: ``(images, labels, scalars, numbers)`` with ``scalars`` = (global
        batch size, learning rate) and ``numbers`` the shard's (top, left, flip) draws: few
        arguments, because every argument costs a little on each call of a ``tf.function``."""
        settings = self.job.training.augmentation
        padding, flip, smoothing = settings.random_crop_padding, settings.horizontal_flip, float(self.job.training.loss.label_smoothing)
        replicas, augmenting = float(self.setup.replicas), self.augment
        model, optimizer, strategy = self.train_model, self.optimizer, self.setup.strategy

        def replica_step(images: Any, labels: Any, scalars: Any, numbers: Any = None) -> Any:
            if augmenting and numbers is not None:
                images = augment.apply(images, numbers, padding=padding, flip=flip)
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                per_example = cross_entropy(logits, labels, smoothing)
                loss = tf.reduce_sum(per_example) / scalars[0]
                penalties = model.losses
                if penalties:
                    loss += tf.add_n(penalties) / replicas
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
            return tf.reduce_sum(per_example), correct, loss

        replica_fn = tf.function(replica_step, jit_compile=True) if self.setup.jit else replica_step

        def step(images: Any, labels: Any, scalars: Any, numbers: Any = None) -> Any:
            """One optimizer step; returns the batch's objective (its replicas' parts summed)."""
            optimizer.learning_rate.assign(scalars[1])
            args = (images, labels, scalars) if numbers is None else (images, labels, scalars, numbers)
            results = strategy.run(replica_fn, args=args)
            loss_sum, correct, loss = (strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in results)
            self.sums.assign_add(tf.cast(tf.stack([loss_sum, correct, scalars[0]]), tf.float64))
            return loss

        return tf.function(step, reduce_retracing=True)

    # -------------------------------------------------------------- input

    def _parts(self) -> list[int]:
        """This worker's replica ids (each reads its shard of every global batch)."""
        local = self.setup.replicas // self.world
        return list(range(self.rank * local, (self.rank + 1) * local))

    def batches(self, start: int, stop: int) -> Iterator[Any]:
        if self.memory is not None:
            x, y = self.memory
            for step in range(start, stop):
                shard = self.plan.shard(step)
                arrays = [x[shard.indices], y[shard.indices]]
                if self.augment:  # the numbers are an argument of the step only when they are used
                    arrays.append(np.stack([shard.tops, shard.lefts, shard.flips], axis=1).astype(np.int32))
                images, labels, *numbers = split(self.setup, *arrays)
                yield shard.count, (images, labels, numbers[0] if numbers else None)
            return
        reader = pipeline.Reader(self.job.train, self.geometry, self.job.preprocessor, self.workers)
        if self.setup.distributed:
            dataset = self.setup.strategy.distribute_datasets_from_function(
                lambda context: reader.training(self.plan, start, stop, self._parts(), self.setup.replicas))
        else:
            dataset = reader.training(self.plan, start, stop, [0], 1)
        stream = iter(dataset)
        for step in range(start, stop):
            try:
                images, labels, numbers = next(stream)
            except tf.errors.OpError as exc:
                raise reader.explain(self.plan.shard(step).indices, exc) from None
            yield self.plan.shard(step).count, (images, labels, numbers)

    # -------------------------------------------------------------- one step

    def step(self, batch: Any, learning_rate: float) -> None:
        count, (images, labels, numbers) = batch
        scalars = np.array([count, learning_rate], np.float32)
        if numbers is None:
            self._loss = self._train_step(images, labels, scalars)
        else:
            self._loss = self._train_step(images, labels, scalars, numbers)

    def last_loss(self) -> float:
        return float(self._loss)

    # -------------------------------------------------------------- metrics and agreement

    def running_sums(self) -> np.ndarray:
        return self.sums.numpy()

    def metric_sums(self) -> np.ndarray:
        return self.sums.numpy()  # every worker holds the sums over all replicas

    def set_metric_sums(self, sums: np.ndarray) -> None:
        self.sums.assign(np.asarray(sums, np.float64))

    def agree(self, flag: bool) -> bool:
        strategy = self.setup.strategy
        votes = strategy.run(lambda: tf.constant(float(flag)))
        return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None).numpy() > 0)

    def broadcast(self, value: str | None) -> str | None:
        return value  # every worker reads its own run directory

    def synchronize(self) -> None:
        """Replicas' variables are mirrored: nothing to do."""

    # -------------------------------------------------------------- checkpoints

    def checkpoint_writer(self) -> Callable[[Path], None] | None:
        return self._write

    def _write(self, folder: Path) -> None:
        with deep_recursion(len(self.model.layers)):
            self.model.save_weights(folder / WEIGHTS)
        variables = self.optimizer.variables
        np.savez(folder / OPTIMIZER, names=np.array([v.path for v in variables]),
                 **{f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)})  # fmt: skip
        layers = seed_layers(self.model)
        np.savez(folder / RANDOM, names=np.array([layer.name for layer in layers], dtype=str),
                 **{f"s{i}": keras.ops.convert_to_numpy(layer.seed_generator.state) for i, layer in enumerate(layers)})  # fmt: skip

    def restore(self, folder: Path, state: dict[str, Any]) -> None:
        precision = state.get("mixed_precision", "none")
        if (precision == "float16") != (self.job.execution.mixed_precision == "float16"):
            raise TrainingError(
                f"{folder}: the checkpoint was trained with mixed_precision {precision} and its loss scaling; "
                f"resume with the same setting (this run has {self.job.execution.mixed_precision})"
            )
        with deep_recursion(len(self.model.layers)):
            self.model.load_weights(folder / WEIGHTS)
        with np.load(folder / OPTIMIZER) as data:
            variables = self.optimizer.variables
            if [str(n) for n in data["names"]] != [v.path for v in variables]:  # same kind, slots and order
                raise TrainingError(f"{folder}: the optimizer state does not match this run's optimizer")
            for i, variable in enumerate(variables):
                variable.assign(data[f"v{i}"])
        with np.load(folder / RANDOM) as data:
            layers = seed_layers(self.model)
            if [str(n) for n in data["names"]] != [layer.name for layer in layers]:
                raise TrainingError(f"{folder}: the random states do not match this model's dropout layers")
            for i, layer in enumerate(layers):
                layer.seed_generator.state.assign(data[f"s{i}"])

    # -------------------------------------------------------------- the end

    def predict(self, split: Split, geometry: Geometry) -> Predictions:
        return self.inference.predict(split, geometry)

    def finish(self) -> Any:
        return self.model

    def close(self) -> None:
        self._scope.close()


__all__ = ["KerasSession", "cross_entropy"]
