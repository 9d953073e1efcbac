"""What the core hands a backend, and what a backend hands back: the job (everything decided,
nothing framework-specific), the :class:`Trainer` protocol and the sessions it opens.

The training loop itself (epochs, validation, checkpoints, metrics, events, progress, Ctrl-C)
is :mod:`.loop`, written once; a backend supplies a :class:`TrainingSession`: its step, its
input pipelines, saving and restoring its state, and prediction. The contract every session
follows, so that one recipe means one thing in every backend:

* weights start from :meth:`TrainingJob.start_weights`: ``resnet_spec.weights.initial_weights(arch,
  training.seed)`` (drawn once with NumPy, so both backends start from the same network), with
  the weights imported by ``train --init-from`` (``job.init``) in place of their own;
* fine-tuning (:mod:`.fine_tune`): the weight nodes ``job.frozen`` names take no updates and keep
  their batch-norm statistics (their norms normalize with them while training); the parameters
  of ``job.head`` learn at ``optimizer.head_lr_multiplier`` times the step's learning rate;
* step ``s`` trains on ``job.plan.shard(s, rank, world)``: the examples, the pad-and-crop and flip
  numbers and the random-resized-crop draws of this rank's shard of the global batch
  (:mod:`.plan`); examples go through ``job.geometry(split, train)`` (:mod:`.geometry`), then
  ``job.preprocessor.apply``, then the device augmentation (:mod:`.augment`);
* the learning rate of step ``s`` is given to :meth:`TrainingSession.step` by the loop
  (:mod:`.schedule`);
* loss: cross-entropy with label smoothing on the classifier's logits (``head.classifier``,
  before any softmax output), summed over the shard and divided by the global batch size, + the
  sum of ``kernel_l2 * sum(w ** 2)`` over kernels; optimizers: sgd ``b = momentum * b + g (+
  weight_decay * w)``, ``w -= lr * b`` (Nesterov: ``w -= lr * (g + momentum * b)``), i.e.
  PyTorch's form in both frameworks; adam with ``weight_decay`` added to the gradient; adamw
  decoupled; weight decay on the parameters ``weight_decay_applies_to`` names;
* metric sums (label-smoothed loss sum, correct, examples) accumulate on the device per epoch and
  are read only when the loop asks (:meth:`TrainingSession.metric_sums`, a collective);
* a checkpoint holds what the session writes (model, optimizer, random states) and the loop's
  ``state.json``; restoring it continues the run bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..spec import Execution, Training
from ..weights import Weights, initial_weights
from . import fine_tune
from .checks import enough_to_train
from .errors import TrainingError
from .geometry import Geometry, geometry_for
from .plan import Plan
from .preprocess import Preprocessor
from .run_dir import RunDir
from .sources import Split

if TYPE_CHECKING:
    from ..importing.result import ImportResult
    from ..pipeline import Architecture
    from .data import Dataset

StepCallback = Callable[[int, float, float], None]  # (step, learning rate, loss of that step)


def training_of(arch: Architecture) -> Training:
    """The spec's recipe; the one place a missing `training` section is reported."""
    if arch.spec.training is None:
        raise TrainingError("the spec has no `training` section; add one (see docs/training.md)")
    return arch.spec.training


@dataclass
class TrainingJob:
    arch: Architecture
    spec_data: dict[str, Any]
    train: Split  # the training examples (validation already held out)
    validation: Split | None
    test: Split
    preprocessor: Preprocessor
    run_dir: RunDir
    execution: Execution
    resume: bool = False
    progress: bool = True
    max_steps: int | None = None  # stop (and checkpoint) once this many steps are done in total
    on_step: StepCallback | None = None  # after every step: (step, learning rate, objective); tests
    checkpoint_every: int | None = None  # steps; None: the recipe's
    class_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # backend options in (strategy), results out (model)
    init: ImportResult | None = None  # weights imported by --init-from (None: the seeded start alone)

    @property
    def classes(self) -> int:
        """The classifier's classes. A backbone (``head.features``) has none, and the schema check
        refuses a `training` section on one (RS211), so this holds for every job made from a valid spec."""
        if self.arch.spec.classes is None:
            raise TrainingError("a backbone (`head.features`) has no classes to train; give the spec a classifier head")
        return self.arch.spec.classes

    @property
    def training(self) -> Training:
        return training_of(self.arch)

    @cached_property
    def plan(self) -> Plan:
        return Plan(self.training, len(self.train))

    def geometry(self, split: Split, *, train: bool) -> Geometry:
        return geometry_for(split, self.arch.spec, train=train)

    def start_weights(self) -> Weights:
        """The weights every backend starts from: the seeded initial weights, with the imported
        ones (everything but a new classifier) in their place."""
        seeded = initial_weights(self.arch, self.training.seed)
        return seeded if self.init is None else self.init.complete(seeded)

    @cached_property
    def frozen(self) -> frozenset[str]:
        """Weight nodes that do not train (``training.freeze``)."""
        return frozenset(fine_tune.frozen_nodes(self.arch, self.training))

    @cached_property
    def head(self) -> frozenset[str]:
        """Weight nodes that learn at ``optimizer.head_lr_multiplier`` times the rate."""
        return frozenset(fine_tune.head_nodes(self.arch))

    @property
    def every(self) -> int | None:
        return self.checkpoint_every if self.checkpoint_every is not None else self.training.checkpoint_every

    @classmethod
    def prepare(cls, arch: Architecture, dataset: Dataset, run_dir: RunDir | Path, *,
                spec_data: dict[str, Any] | None = None, execution: dict[str, Any] | None = None,
                **options: Any) -> TrainingJob:  # fmt: skip
        """A job for ``dataset``: the recipe's validation hold-out, the preprocessor fitted on the
        rest, the recipe's execution settings with ``execution``'s (non-None) values over them."""
        training = training_of(arch)
        enough_to_train(dataset.name, len(dataset.train), training)
        train, validation = dataset.validation_split(training.validation_split, training.seed)
        size = (arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels)
        preprocessor = Preprocessor.fit(training.preprocessing, train, size)
        settings = training.execution.model_copy(update={k: v for k, v in (execution or {}).items() if v is not None})
        folder = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir, tensorboard=training.tensorboard)
        return cls(arch, spec_data or {}, train, validation, dataset.test, preprocessor, folder, settings,
                   class_names=dataset.class_names, **options)  # fmt: skip


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray  # (classes, classes): rows true class, columns predicted

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "loss": self.loss, "confusion_matrix": self.confusion.tolist(),
                "class_names": class_names or []}  # fmt: skip


Predictions = Iterator[tuple[np.ndarray, np.ndarray]]  # (float logits, labels) batch after batch


class Predictor(Protocol):
    def predict(self, split: Split, geometry: Geometry) -> Predictions:
        """Eval-mode logits of every example of ``split`` (geometry, then the preprocessor), in order."""


class TrainingSession(Predictor, Protocol):
    """A backend's side of one training run (model, optimizer, input pipelines, position)."""

    backend: str  # the backend's name, recorded in checkpoints
    rank: int  # this process' rank (0: the chief, which writes the run directory)
    world: int  # processes taking part
    notes: list[str]  # things the user should know (printed once by the chief)

    def batches(self, start: int, stop: int) -> Iterator[Any]:
        """This rank's input for steps ``start`` .. ``stop - 1``, in order (prefetched)."""

    def step(self, batch: Any, learning_rate: float) -> None:
        """One optimizer step on ``batch``; the epoch's metric sums grow on the device."""

    def last_loss(self) -> float:
        """The objective of the last step over the global batch (waits for the step)."""

    def metric_sums(self) -> np.ndarray:
        """(loss sum, correct, examples) of the epoch so far over every rank (a collective)."""

    def running_sums(self) -> np.ndarray:
        """The same, of this rank alone (no collective: for the progress bar)."""

    def set_metric_sums(self, sums: np.ndarray) -> None:
        """Set the epoch's global metric sums (zeros: a new epoch; a checkpoint's on resume)."""

    def agree(self, flag: bool) -> bool:
        """Whether any rank raised ``flag`` (a collective; ``flag`` itself in one process)."""

    def broadcast(self, value: str | None) -> str | None:
        """The chief's ``value`` on every rank where ranks exchange objects; else this rank's own."""

    def synchronize(self) -> None:
        """Make what ranks hold apart identical (norm statistics): before validation, checkpoints
        and the final evaluation (a collective; nothing in one process)."""

    def checkpoint_writer(self) -> Callable[[Path], None] | None:
        """Gather the state to save (every rank calls it: a collective) and return what writes it
        into a folder; the chief's is written to the checkpoint, another rank's (if any) to a
        scratch folder."""

    def restore(self, folder: Path, state: dict[str, Any]) -> None:
        """Load a checkpoint this backend wrote (``state`` is its ``state.json``)."""

    def finish(self) -> Any:
        """The trained model (the backend's network object)."""

    def close(self) -> None: ...


@runtime_checkable
class Trainer(Protocol):
    """A backend that can train: it opens sessions; :mod:`.loop` drives them."""

    def training_session(self, job: TrainingJob) -> TrainingSession: ...

    def predictor(self, arch: Architecture, weights: Path, preprocessor: Preprocessor,
                  execution: Execution | None = None) -> Predictor:  # fmt: skip
        """A predictor of a checkpoint folder (checked by the core) or a model file this backend saved."""


class Scorer:
    """Accuracy, mean plain cross-entropy (float64 on the host) and the confusion matrix, summed
    batch by batch: one definition, so both backends report the same numbers for the same logits."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.loss_sum, self.correct, self.count = 0.0, 0, 0
        self.confusion = np.zeros((classes, classes), np.int64)

    def add(self, logits: np.ndarray, labels: np.ndarray) -> None:
        labels = np.asarray(labels, np.int64)
        if len(labels) == 0:
            return
        z = logits.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        self.loss_sum += float(-log_probs[np.arange(len(labels)), labels].sum())
        predictions = logits.argmax(axis=1)
        self.correct += int((predictions == labels).sum())
        self.count += len(labels)
        np.add.at(self.confusion, (labels, predictions), 1)

    def result(self) -> Evaluation:
        if self.count == 0:
            return Evaluation(float("nan"), float("nan"), self.confusion)
        return Evaluation(self.correct / self.count, self.loss_sum / self.count, self.confusion)


def score(logits: np.ndarray, labels: np.ndarray, classes: int) -> Evaluation:
    scorer = Scorer(classes)
    scorer.add(logits, labels)
    return scorer.result()


def score_all(predictions: Predictions, classes: int) -> Evaluation:
    scorer = Scorer(classes)
    for logits, labels in predictions:
        scorer.add(logits, labels)
    return scorer.result()


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
