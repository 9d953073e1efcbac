"""What the core hands a backend's trainer: everything decided, nothing framework-specific.

A backend that can train implements :class:`Trainer` (``train`` and ``evaluate``). The trainer's
contract, identical in every backend, so that one recipe means one thing:

* weights start from ``resnet_spec.weights.initial_weights(arch, training.seed)`` (drawn once
  with NumPy, so both backends start from the same network);
* batches: ``batches.batch_indices(len(x_train), batch_size, seed, epoch)``; the last batch of
  an epoch may be smaller; ``iterations`` stops mid-epoch;
* inputs: ``job.preprocessor(x)`` then augmentation as in ``augment.augment`` with its random
  numbers drawn from a generator seeded by (seed, epoch, batch index), so a resumed run draws
  the same ones;
* learning rate at step s: ``schedule.learning_rate(training, s, steps_per_epoch)``;
* loss: cross-entropy with label smoothing on the classifier's logits (``head.classifier``,
  before any softmax output) + sum of ``kernel_l2 * sum(w ** 2)`` over kernels;
* optimizers: sgd ``b = momentum * b + g (+ weight_decay * w)``, ``w -= lr * b`` (Nesterov:
  ``w -= lr * (g + momentum * b)``), i.e. PyTorch's form in both frameworks; adam with
  ``weight_decay`` added to the gradient; adamw decoupled; weight decay on the parameters
  ``weight_decay_applies_to`` names;
* after each epoch: validation metrics, ``run_dir.log_epoch``, and a checkpoint in
  ``run_dir.checkpoint`` replaced atomically, holding the model, the optimizer, the step, the
  epoch and the preprocessor, so that ``resume`` continues exactly where the run stopped;
* ``on_step``, when given, is called after every optimizer step with (step, learning rate used,
  loss of that batch as a Python float) — tests use it to compare backends step by step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..spec import Execution
from .data import Dataset
from .preprocess import Preprocessor
from .run_dir import RunDir

if TYPE_CHECKING:
    from ..pipeline import Architecture


@dataclass
class TrainingJob:
    arch: Architecture
    spec_data: dict[str, Any]
    dataset: Dataset  # training part (validation already held out)
    x_val: np.ndarray
    y_val: np.ndarray
    preprocessor: Preprocessor
    run_dir: RunDir
    execution: Execution
    resume: bool = False
    progress: bool = True
    max_steps: int | None = None  # stop early (tests, smoke runs); None: the recipe's length
    on_step: Callable[[int, float, float], None] | None = None  # (step, learning rate, loss)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray  # (classes, classes): rows true class, columns predicted

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "loss": self.loss, "confusion_matrix": self.confusion.tolist(),
                "class_names": class_names or []}  # fmt: skip


@runtime_checkable
class Trainer(Protocol):
    def train(self, job: TrainingJob) -> Evaluation:
        """Train (or resume) and return the evaluation on the test set."""

    def evaluate(self, checkpoint: Any, arch: Architecture, images: np.ndarray, labels: np.ndarray,
                 preprocessor: Preprocessor | None) -> Evaluation:  # fmt: skip
        """Evaluate a run directory's checkpoint (or a saved model file) on preprocessed images."""


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def score(logits: np.ndarray, labels: np.ndarray, classes: int) -> Evaluation:
    """Accuracy, mean plain cross-entropy (float64 on the host) and the confusion matrix of
    float logits: one definition, so both backends report the same numbers for the same logits."""
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return Evaluation(float("nan"), float("nan"), np.zeros((classes, classes), np.int64))
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    predictions = logits.argmax(axis=1)
    return Evaluation(float((predictions == labels).mean()), loss, confusion_matrix(labels, predictions, classes))


def epoch_row(epoch: int, step: int, rate: float, sums: Any, seconds: float) -> dict[str, Any]:
    """The run directory's row for a finished epoch (``epoch`` counts from 1) from its metric
    sums (loss sum, correct, examples); validation columns are filled in by the caller."""
    loss_sum, correct, seen = (float(v) for v in sums)
    return {
        "epoch": epoch, "step": step, "learning_rate": rate, "loss": loss_sum / max(seen, 1.0),
        "accuracy": correct / max(seen, 1.0), "val_loss": None, "val_accuracy": None, "seconds": round(seconds, 3),
    }  # fmt: skip


def describe_epoch(row: dict[str, Any], epochs: int) -> str:
    text = f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.2%}"
    if row["val_loss"] is not None:
        text += f", val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.2%}"
    return f"{text} (lr {row['learning_rate']:.3g}, {row['seconds']:.1f}s)"
