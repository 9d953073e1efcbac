"""``resnet-spec train`` and ``resnet-spec evaluate``: validate, load and check the data, then
create the run directory and hand a :class:`~resnet_spec.training.job.TrainingJob` to the one
training loop (:mod:`.loop`) with the backend's trainer.

Order matters: everything that can be checked without training (the recipe, the data set's
layout, shapes and labels, the run directory's state) is checked before the run directory is
created or written."""

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
from . import data, loop
from .errors import DataError, TrainingError, TrainingInterrupted
from .job import Evaluation, Trainer, TrainingJob, training_of
from .preprocess import Preprocessor
from .run_dir import RunDir

__all__ = ["DataError", "TrainingError", "TrainingInterrupted", "evaluate", "is_leader", "print_evaluation", "train",
           "trainer_for"]

RUN_FILE = "run.json"


def train(arch: Architecture, spec_data: dict[str, Any], *, backend: str, source: str, out: Path,
          resume: bool = False, execution: dict[str, Any] | None = None, max_steps: int | None = None,
          checkpoint_every: int | None = None, progress: bool = True,
          on_step: Callable[[int, float, float], None] | None = None, resume_hint: str | None = None) -> Evaluation:  # fmt: skip
    """Train ``arch`` on ``source`` into ``out``; ``resume_hint`` (the command to type) is added to
    the message when the run is interrupted."""
    training = training_of(arch)
    leader = is_leader()
    run_dir = RunDir(out, tensorboard=training.tensorboard)
    if leader:
        _check_run_dir(run_dir, arch, backend, resume)
    trainer = trainer_for(backend)
    dataset = data.load(source, arch.spec)
    for note in dataset.notes if leader else []:  # the conversions the recipe asked for, said once
        print(note)
    job = TrainingJob.prepare(arch, dataset, run_dir, spec_data=spec_data, execution=execution, resume=resume,
                              progress=progress, max_steps=max_steps, on_step=on_step,
                              checkpoint_every=checkpoint_every)  # fmt: skip
    if leader and not resume:
        run_dir.write_spec(spec_data)
        (run_dir.path / RUN_FILE).write_text(json.dumps({"backend": backend, "hash": arch.hash, "data": source,
                                                         "preprocessor": job.preprocessor.to_dict()}))  # fmt: skip
    try:
        result = loop.train(trainer, job)
    except TrainingInterrupted as stopped:
        hint = f"; resume with: {resume_hint}" if resume_hint else ""
        raise TrainingInterrupted(f"{stopped}{hint}", stopped.step) from None
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"stopped at once (a second Ctrl-C), without a checkpoint of this step; --resume "
                                  f"continues from the last one in {run_dir.checkpoint}", -1) from None  # fmt: skip
    if not leader:
        return result
    run_dir.write_result({
        "backend": backend, "test_accuracy": result.accuracy, "test_loss": result.loss,
        **result.to_dict(dataset.class_names), "plot": str(run_dir.path / "curves.png"),
        "checkpoint": str(run_dir.checkpoint), "hash": arch.hash,
    })  # fmt: skip
    return result


def is_leader() -> bool:
    """Under torchrun or TensorFlow multi-worker training every process runs ``train``; only rank
    0 (worker 0) owns the run directory and reports."""
    if int(os.environ.get("RANK", "0")) != 0:
        return False
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task") or {}
    if task.get("type") == "chief" or not task:
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})


def evaluate(target: Path, source: str, backend: str | None = None) -> tuple[Evaluation, list[str]]:
    run_file = target / RUN_FILE
    if not run_file.exists():
        raise TrainingError(f"{target}: not a run directory (no {RUN_FILE}); pass the --out folder of `resnet-spec train`")
    meta = json.loads(run_file.read_text())
    arch = build_architecture(target / "spec.yaml")
    if arch.hash != meta["hash"]:
        raise TrainingError(f"{target}: spec.yaml no longer gives the architecture this run trained ({meta['hash']})")
    dataset = data.load(source, arch.spec)
    trainer = trainer_for(backend or meta["backend"])
    preprocessor = Preprocessor.from_dict(meta["preprocessor"])
    evaluation = loop.evaluate(trainer, arch, target / "checkpoint", dataset.test, preprocessor)
    return evaluation, dataset.class_names


def trainer_for(name: str) -> Trainer:
    """The backend called ``name``, checked to be able to train."""
    backend = get_backend(name)
    if not isinstance(backend, Trainer):
        raise BackendError(f"backend '{name}' cannot train (it has no training_session/predictor)")
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


def print_evaluation(evaluation: Evaluation, class_names: list[str], stream: Any = None) -> None:
    stream = sys.stdout if stream is None else stream  # looked up per call: tests and the CLI redirect it
    print(f"test accuracy: {evaluation.accuracy:.2%} (loss {evaluation.loss:.4f})", file=stream)
    names = class_names or [str(i) for i in range(len(evaluation.confusion))]
    width = max(len(n) for n in names) + 2
    print("confusion matrix (rows: true class, columns: predicted):", file=stream)
    print(" " * width + "".join(f"{n[:8]:>9s}" for n in names), file=stream)
    for name, row in zip(names, np.asarray(evaluation.confusion)):
        print(f"{name:<{width}s}" + "".join(f"{int(v):9d}" for v in row), file=stream)
