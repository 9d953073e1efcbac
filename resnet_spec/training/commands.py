"""``resnet-spec train`` and ``resnet-spec evaluate``: validate, load and check the data, then
hand a :class:`~resnet_spec.training.job.TrainingJob` to the backend's trainer."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import BackendError, get_backend
from ..pipeline import Architecture, build_architecture
from . import data
from .job import Evaluation, Trainer, TrainingJob
from .preprocess import Preprocessor
from .run_dir import RunDir

RUN_FILE = "run.json"


class TrainingError(RuntimeError):
    """A problem that stops training before it starts (no training section, bad data, ...)."""


def train(arch: Architecture, spec_data: dict[str, Any], *, backend: str, source: str, out: Path,
          resume: bool = False, execution: dict[str, Any] | None = None, max_steps: int | None = None,
          progress: bool = True, on_step: Callable[[int, float, float], None] | None = None) -> Evaluation:  # fmt: skip
    training = arch.spec.training
    if training is None:
        raise TrainingError("the spec has no `training` section; add one (see docs/training.md)")
    leader = is_leader()
    run_dir = RunDir(out, tensorboard=training.tensorboard)
    if leader:
        _check_run_dir(run_dir, arch, backend, resume)
    trainer = _trainer(backend)
    dataset = data.load(source, arch.spec)
    train_part, x_val, y_val = dataset.validation_split(training.validation_split, training.seed)
    preprocessor = Preprocessor.fit(training.preprocessing, train_part.x_train)
    settings = training.execution.model_copy(update={k: v for k, v in (execution or {}).items() if v is not None})
    if leader and not resume:
        run_dir.write_spec(spec_data)
        (run_dir.path / RUN_FILE).write_text(json.dumps({"backend": backend, "hash": arch.hash, "data": source,
                                                         "preprocessor": preprocessor.to_dict()}))  # fmt: skip
    job = TrainingJob(arch, spec_data, train_part, x_val, y_val, preprocessor, run_dir, settings, resume, progress,
                      max_steps, on_step)  # fmt: skip
    result = trainer.train(job)
    if not leader:
        return result
    run_dir.write_result({
        "backend": backend, "test_accuracy": result.accuracy, "test_loss": result.loss,
        **result.to_dict(dataset.class_names), "plot": str(run_dir.path / "curves.png"),
        "checkpoint": str(run_dir.checkpoint), "hash": arch.hash,
    })  # fmt: skip
    return result


def is_leader() -> bool:
    """Under torchrun every rank runs ``train``; only rank 0 owns the run directory and reports."""
    return int(os.environ.get("RANK", "0")) == 0


def evaluate(target: Path, source: str, backend: str | None = None) -> tuple[Evaluation, list[str]]:
    run_file = target / RUN_FILE
    if not run_file.exists():
        raise TrainingError(f"{target}: not a run directory (no {RUN_FILE}); pass the --out folder of `resnet-spec train`")
    meta = json.loads(run_file.read_text())
    arch = build_architecture(target / "spec.yaml")
    if arch.hash != meta["hash"]:
        raise TrainingError(f"{target}: spec.yaml no longer gives the architecture this run trained ({meta['hash']})")
    dataset = data.load(source, arch.spec)
    trainer = _trainer(backend or meta["backend"])
    preprocessor = Preprocessor.from_dict(meta["preprocessor"])
    evaluation = trainer.evaluate(target / "checkpoint", arch, dataset.x_test, dataset.y_test, preprocessor)
    return evaluation, dataset.class_names


def _trainer(name: str) -> Trainer:
    backend = get_backend(name)
    if not isinstance(backend, Trainer):
        raise BackendError(f"backend '{name}' cannot train (it has no train/evaluate)")
    return backend


def _check_run_dir(run_dir: RunDir, arch: Architecture, backend: str, resume: bool) -> None:
    run_file = run_dir.path / RUN_FILE
    if resume:
        if not run_file.exists():
            raise TrainingError(f"{run_dir.path}: nothing to resume (no {RUN_FILE})")
        meta = json.loads(run_file.read_text())
        if meta["hash"] != arch.hash or meta["backend"] != backend:
            raise TrainingError(
                f"{run_dir.path} was trained with backend {meta['backend']} and architecture {meta['hash'][:19]}; "
                f"resume needs the same spec and backend"
            )
    elif run_file.exists():
        raise TrainingError(f"{run_dir.path} already holds a run; use --resume to continue it or choose another --out")


def print_evaluation(evaluation: Evaluation, class_names: list[str], stream: Any = sys.stdout) -> None:
    print(f"test accuracy: {evaluation.accuracy:.2%} (loss {evaluation.loss:.4f})", file=stream)
    names = class_names or [str(i) for i in range(len(evaluation.confusion))]
    width = max(len(n) for n in names) + 2
    print("confusion matrix (rows: true class, columns: predicted):", file=stream)
    print(" " * width + "".join(f"{n[:8]:>9s}" for n in names), file=stream)
    for name, row in zip(names, np.asarray(evaluation.confusion)):
        print(f"{name:<{width}s}" + "".join(f"{int(v):9d}" for v in row), file=stream)
