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

from dataclasses import dataclass, field
from collections.abc import Callable
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
