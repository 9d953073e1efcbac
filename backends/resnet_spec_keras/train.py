"""The Keras trainer: :class:`resnet_spec.training.job.Trainer` for TensorFlow / Keras 3.

It follows the trainer contract of :mod:`resnet_spec.training.job` step for step:

* start: the seeded neutral initial weights (:func:`resnet_spec.weights.initial_weights` with
  ``training.seed``: the same start as the PyTorch trainer), dropout/drop-path seed states
  derived from the seed;
* batch ``b`` of epoch ``e``: ``batch_indices(len(x_train), batch_size, seed, e)[b]`` of the
  preprocessed training images (``job.preprocessor``, applied once up front);
  augmentation numbers from ``np.random.default_rng([seed, e, b])`` (:mod:`.augment`), applied
  on the device inside the step; learning rate ``schedule.learning_rate(training, step,
  steps_per_epoch)``, fed to the step as a tensor (no Keras schedule, whose boundaries count
  differently);
* loss: cross-entropy with label smoothing on ``head.classifier``'s logits (float32, also under
  mixed precision; a softmax output layer is not part of the training model) + the kernels'
  L2 terms (``model.losses``, i.e. ``kernel_l2 * sum(w ** 2)``);
* update: :class:`.optim.TorchFormOptimizer` (PyTorch's SGD/Nesterov, Adam, AdamW forms);
* after each epoch: validation loss/accuracy, ``run_dir.log_epoch``, an atomic checkpoint
  (:mod:`.checkpoint`). A run stopped by ``max_steps`` (an absolute step count: the run stops
  once it has taken that many steps in total) also checkpoints, mid-epoch, with the epoch's
  partial metric sums, so ``resume`` continues at exactly the next step with the same weights,
  optimizer slots, dropout seeds and metrics as an uninterrupted run.

Reported numbers: the training ``loss`` is the mean label-smoothed cross-entropy of the epoch's
training batches in training mode (without the L2 term); ``val_loss`` and the test loss are
plain cross-entropy (no smoothing) in inference mode.

``job.on_step(step, learning_rate, loss)`` is called after every optimizer step with the step's
index (from 0), the learning rate it used and its batch's objective (the label-smoothed
cross-entropy + the L2 term: the loss the gradients are taken of). ``job.extra["strategy"]``
selects scale-out (:mod:`.execution`).

Execution switches, scale-out and ``TF_CONFIG`` multi-worker training: :mod:`.execution`.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from resnet_spec.backends import BackendError
from resnet_spec.spec import Training
from resnet_spec.training import checkpoint
from resnet_spec.training.batches import batch_indices, steps_per_epoch
from resnet_spec.training.commands import TrainingError
from resnet_spec.training.job import Evaluation, TrainingJob, describe_epoch, epoch_row, score
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.schedule import learning_rate, total_steps
from resnet_spec.weights import initial_weights

from . import augment
from .checkpoint import OPTIMIZER, RANDOM, WEIGHTS
from .execution import Setup, resolve, split
from .model import build_model, deep_recursion
from .optim import TorchFormOptimizer
from .probe import LOGITS
from .weights import set_weights

EVAL_BATCH = 256
PROGRESS_SECONDS = 0.5


# ---------------------------------------------------------------------------- models


def logits_model(model: keras.Model) -> keras.Model:
    """The model up to ``head.classifier`` (sharing its layers): the output of the training
    loss, also when the spec ends in a softmax."""
    classifier = model.get_layer(LOGITS)
    if model.outputs[0] is classifier.output:
        return model
    with deep_recursion(len(model.layers)):
        return keras.Model(model.inputs, classifier.output, name=f"{model.name}_logits")


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


# ---------------------------------------------------------------------------- the trainer


class _Run:
    """One training run: model, optimizer, compiled steps, data, position."""

    def __init__(self, job: TrainingJob, setup: Setup):
        self.job, self.setup = job, setup
        training = job.arch.spec.training
        if training is None:
            raise TrainingError("the spec has no `training` section")
        self.training: Training = training
        arch = job.arch
        with setup.policy_scope():
            self.model = build_model(arch)
        set_weights(self.model, arch, initial_weights(arch, self.training.seed))
        reset_seeds(self.model, self.training.seed)
        self.train_model = logits_model(self.model)
        inner = TorchFormOptimizer.from_settings(self.training.optimizer)
        self.optimizer = (
            keras.optimizers.LossScaleOptimizer(inner, name="loss_scale") if setup.policy == "mixed_float16" else inner
        )
        self.optimizer.build(self.train_model.trainable_variables)
        self.x = job.preprocessor(job.dataset.x_train)
        self.y = np.asarray(job.dataset.y_train, np.int64)
        self.x_val = job.preprocessor(job.x_val) if len(job.x_val) else None
        self.y_val = np.asarray(job.y_val, np.int64)
        self.count = len(self.x)
        self.batch_size = self.training.batch_size
        self.steps_per_epoch = steps_per_epoch(self.count, self.batch_size)
        self.total = total_steps(self.training, self.steps_per_epoch)
        self.stop = self.total if job.max_steps is None else min(self.total, job.max_steps)
        self.step = 0
        self.sums = tf.Variable(tf.zeros(3, tf.float64), trainable=False)  # loss sum, correct, examples
        self._train_step = self._make_train_step()
        self._predict = tf.function(lambda x: tf.cast(self.train_model(x, training=False), tf.float32),
                                    reduce_retracing=True)  # fmt: skip

    # -------------------------------------------------------------- compiled steps

    def _make_train_step(self) -> Any:
        """The compiled step: ``(images, labels, scalars[, numbers])`` with ``scalars`` =
        (global batch size, learning rate) and ``numbers`` the augmentation draws (absent when
        the recipe does not augment): few arguments, because every argument costs a little on
        each call of a ``tf.function``."""
        settings = self.training.augmentation
        padding, flip = settings.random_crop_padding, settings.horizontal_flip
        smoothing = float(self.training.loss.label_smoothing)
        replicas = float(self.setup.replicas)
        model, optimizer, strategy = self.train_model, self.optimizer, self.setup.strategy

        def replica_step(images: Any, labels: Any, scalars: Any, numbers: Any = None) -> Any:
            if numbers is not None:
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

    def run_step(self, epoch: int, batch: int, indices: np.ndarray) -> float:
        rate = learning_rate(self.training, self.step, self.steps_per_epoch)
        settings = self.training.augmentation
        count = len(indices)
        arrays = [self.x[indices], self.y[indices]]
        if augment.enabled(settings):
            arrays.append(augment.draw(settings, count, augment.generator(self.training.seed, epoch, batch)))
        images, labels, *numbers = split(self.setup, *arrays)
        loss = self._train_step(images, labels, np.array([count, rate], np.float32), *numbers)
        self.step += 1
        if self.job.on_step is not None:  # reading the loss waits for the step: only when asked
            self.job.on_step(self.step - 1, rate, float(loss))
        return rate

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self._predict, images, self.batch_size)

    # -------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "backend": "keras", "hash": self.job.arch.hash, "step": self.step,
            "epoch": self.step // self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
            "epoch_sums": [float(v) for v in self.sums.numpy()], "preprocessor": self.job.preprocessor.to_dict(),
            "mixed_precision": self.job.execution.mixed_precision,
        }  # fmt: skip

    def save(self, target: Path) -> None:
        def write(folder: Path) -> None:
            with deep_recursion(len(self.model.layers)):
                self.model.save_weights(folder / WEIGHTS)
            variables = self.optimizer.variables
            np.savez(folder / OPTIMIZER, names=np.array([v.path for v in variables]),
                     **{f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)})  # fmt: skip
            layers = seed_layers(self.model)
            np.savez(folder / RANDOM, names=np.array([layer.name for layer in layers], dtype=str),
                     **{f"s{i}": keras.ops.convert_to_numpy(layer.seed_generator.state) for i, layer in enumerate(layers)})  # fmt: skip

        checkpoint.save(target, write, self.state())

    def restore(self, folder: Path) -> None:
        state = checkpoint.check_resumable(folder, self.job.arch.hash, self.steps_per_epoch)
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
            names = [str(n) for n in data["names"]]
            if names != [v.path for v in variables]:  # same optimizer kind, slots and variable order
                raise TrainingError(f"{folder}: the optimizer state does not match this run's optimizer")
            for i, variable in enumerate(variables):
                variable.assign(data[f"v{i}"])
        with np.load(folder / RANDOM) as data:
            layers = seed_layers(self.model)
            if [str(n) for n in data["names"]] != [layer.name for layer in layers]:
                raise TrainingError(f"{folder}: the random states do not match this model's dropout layers")
            for i, layer in enumerate(layers):
                layer.seed_generator.state.assign(data[f"s{i}"])
        self.step = int(state["step"])
        self.sums.assign(np.asarray(state["epoch_sums"], np.float64))


def cross_entropy(logits: Any, labels: Any, smoothing: float) -> Any:
    """Per-example cross-entropy with label smoothing (PyTorch's definition: (1 - s) * NLL +
    s * mean over classes of -log p)."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    nll = -tf.gather(log_probs, labels, axis=-1, batch_dims=1)
    if not smoothing:
        return nll
    return (1.0 - smoothing) * nll - smoothing * tf.reduce_mean(log_probs, axis=-1)


def predict_logits(predict: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    size = max(batch_size, EVAL_BATCH)
    parts = [predict(tf.constant(images[i : i + size])).numpy() for i in range(0, len(images), size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def train(job: TrainingJob) -> Evaluation:
    setup = resolve(job.execution, job.extra)
    for note in setup.notes:
        print(f"note: {note}", file=sys.stderr)
    with setup.scope():
        run = _Run(job, setup)
        # Only the chief of a multi-worker run writes the run directory; the others checkpoint
        # to a throw-away folder (they must take part in saving: it reads mirrored variables).
        target = job.run_dir.checkpoint if setup.chief else Path(tempfile.mkdtemp()) / "checkpoint"
        if job.resume:
            recover = checkpoint.recover if setup.chief else checkpoint.locate
            checkpoint.resume(run, recover(job.run_dir.checkpoint), job.run_dir, setup.chief)
        _loop(run, job, setup, target)
        logits = run.predict(job.preprocessor(job.dataset.x_test))
    return score(logits, job.dataset.y_test, job.arch.spec.classes)


def _loop(run: _Run, job: TrainingJob, setup: Setup, target: Path) -> None:
    training, spe = run.training, run.steps_per_epoch
    rate = learning_rate(training, max(run.step - 1, 0), spe)
    while run.step < run.stop:
        epoch = run.step // spe
        started = time.perf_counter()
        rate = run_epoch(run, progress=job.progress, default_rate=rate)
        finished = run.step == (epoch + 1) * spe or run.step == run.total
        if finished:
            _end_epoch(run, job, setup, epoch, rate, time.perf_counter() - started)
            if training.checkpoint_every_epoch or run.step >= run.stop:
                run.save(target)
        else:  # max_steps stopped the run mid-epoch: checkpoint with the partial sums, log nothing
            run.save(target)


def run_epoch(run: _Run, *, progress: bool, default_rate: float = 0.0) -> float:
    """The steps from ``run.step`` to the end of its epoch (or ``run.stop``), with a progress bar
    showing the epoch's running loss, accuracy and learning rate; returns the last learning rate.
    (The per-epoch part of the loop; benchmarks/bench_train_keras.py times it.)"""
    from tqdm import tqdm

    spe = run.steps_per_epoch
    epoch, first = divmod(run.step, spe)
    if first == 0:
        run.sums.assign(tf.zeros(3, tf.float64))
    order = batch_indices(run.count, run.batch_size, run.training.seed, epoch)
    last = min(spe, run.stop - epoch * spe)  # batches of this epoch this invocation runs
    bar = tqdm(total=min(spe, run.total - epoch * spe), initial=first, desc=f"epoch {epoch + 1}/{-(-run.total // spe)}",
               unit="step", disable=not progress, leave=False, dynamic_ncols=True)  # fmt: skip
    rate, shown = default_rate, time.perf_counter()
    with contextlib.closing(bar):
        for batch in range(first, last):
            rate = run.run_step(epoch, batch, order[batch])
            bar.update(1)
            if progress and time.perf_counter() - shown > PROGRESS_SECONDS:
                loss_sum, correct, seen = run.sums.numpy()
                bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", acc=f"{correct / max(seen, 1):.2%}",
                                lr=f"{rate:.3g}", refresh=False)  # fmt: skip
                shown = time.perf_counter()
    return rate


def _end_epoch(run: _Run, job: TrainingJob, setup: Setup, epoch: int, rate: float, seconds: float) -> None:
    row = epoch_row(epoch + 1, run.step, rate, run.sums.numpy(), seconds)
    if run.x_val is not None:
        val = score(run.predict(run.x_val), run.y_val, job.arch.spec.classes)
        row["val_loss"], row["val_accuracy"] = val.loss, val.accuracy
    if setup.chief:
        job.run_dir.log_epoch(row)
    print(describe_epoch(row, -(-run.total // run.steps_per_epoch)), flush=True)


# ---------------------------------------------------------------------------- evaluate


def evaluate(target: Any, arch: Any, images: np.ndarray, labels: np.ndarray,
             preprocessor: Preprocessor | None) -> Evaluation:  # fmt: skip
    """Evaluate a run's checkpoint directory (or a ``.keras`` file saved by this backend) on
    ``images`` (raw: ``preprocessor`` is applied; None takes the one stored in the checkpoint)."""
    path = Path(target)
    if path.is_file() and path.suffix == ".keras":
        from .io import load

        model, _ = load(path)
        if preprocessor is None:
            raise BackendError(f"{path}: a saved model holds no preprocessor; pass one")
    else:
        folder, state = checkpoint.for_evaluation(path, arch.hash)
        model = build_model(arch)
        with deep_recursion(len(model.layers)):
            model.load_weights(folder / WEIGHTS)
        if preprocessor is None:
            preprocessor = Preprocessor.from_dict(state["preprocessor"])
    infer = logits_model(model)
    predict = tf.function(lambda x: tf.cast(infer(x, training=False), tf.float32), reduce_retracing=True)
    batch = arch.spec.training.batch_size if arch.spec.training is not None else EVAL_BATCH
    logits = predict_logits(predict, preprocessor(images), batch)
    return score(logits, labels, arch.spec.classes)


__all__ = ["evaluate", "train"]
