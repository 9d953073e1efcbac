"""``resnet-spec evaluate`` on a model file (``compile``, ``convert`` or ``export`` wrote it)
instead of a run directory.

A model file holds the spec and the weights, not the preprocessor a run fitted on its training
set. The preprocessor is fitted again, as ``train`` does (the recipe's validation hold-out left
out), on the training part of the data given: for the same data the same numbers (the mean modes),
and no data is read at all for the modes that fit nothing (scale, mean_std, caffe, torch)."""

from __future__ import annotations

from pathlib import Path

from ..backends import BackendError, backend_for_file, get_backend
from ..pipeline import build_architecture
from ..spec import Preprocessing
from . import data, loop
from .errors import TrainingError
from .job import Evaluation, Trainer
from .preprocess import Preprocessor


def evaluate_model_file(path: Path, source: str, backend: str | None = None) -> tuple[Evaluation, list[str]]:
    name = backend or backend_for_file(path)
    trainer = get_backend(name)
    if not isinstance(trainer, Trainer):
        raise BackendError(f"backend '{name}' cannot evaluate (it has no predictor)")
    check = getattr(trainer, "check_training", None)  # Keras on JAX: one line before the file is read
    if check is not None:
        check()
    try:
        _, meta = trainer.load(path)  # refuses a damaged or mismatched file before any data is read
    except BackendError as exc:
        raise TrainingError(str(exc)) from exc
    arch = build_architecture(meta["spec"], filename=f"{path} (stored spec)")
    if arch.spec.classes is None:
        raise TrainingError(f"{path}: the model has no classifier to evaluate")
    dataset = data.load(source, arch.spec)
    training = arch.spec.training
    settings = training.preprocessing if training is not None else Preprocessing()
    split = training.validation_split if training is not None else 0.0
    train, _ = dataset.validation_split(split, training.seed if training is not None else 0)
    size = (arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels)
    preprocessor = Preprocessor.fit(settings, train, size)
    return loop.evaluate(trainer, arch, path, dataset.test, preprocessor), dataset.class_names
