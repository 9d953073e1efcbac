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
from . import data, fine_tune, loop, run_state
from .errors import DataError, TrainingDiverged, TrainingError, TrainingInterrupted
from .job import Evaluation, Trainer, TrainingJob, training_of
from .preprocess import Preprocessor
from .run_dir import RunDir

__all__ = ["DataError", "TrainingDiverged", "TrainingError", "TrainingInterrupted", "check_before_launch", "evaluate", "is_leader",
           "print_evaluation", "train", "trainer_for"]

RUN_FILE = run_state.RUN_FILE


def train(arch: Architecture, spec_data: dict[str, Any], *, backend: str, source: str, out: Path,
          resume: bool = False, execution: dict[str, Any] | None = None, max_steps: int | None = None,
          checkpoint_every: int | None = None, progress: bool = True,
          on_step: Callable[[int, float, float], None] | None = None, resume_hint: str | None = None,
          allow_recipe_change: bool = False, init_from: Path | None = None) -> Evaluation:  # fmt: skip
    """Train ``arch`` on ``source`` into ``out``; ``resume_hint`` (the command to type) is added to
    the message when the run is interrupted. The run directory is checked before the data is
    read, and created and locked (:mod:`.run_state`) only once the data is good. ``init_from``:
    start from the weights of a model file, a run directory or a foreign weights file
    (:mod:`.fine_tune`; not read on resume, where the checkpoint holds the weights)."""
    training = training_of(arch)
    leader = is_leader()
    run_dir = RunDir(out, tensorboard=training.tensorboard)
    folder: dict[str, Any] = {"arch_hash": arch.hash, "backend": backend, "recipe": run_state.recipe_of(training),
                              "resume": resume, "allow_recipe_change": allow_recipe_change}  # fmt: skip
    if leader:
        run_state.inspect(out, **folder)
    trainer = trainer_for(backend)
    init = fine_tune.import_start(arch, Path(init_from)) if init_from is not None and not resume else None
    dataset = data.load(source, arch.spec)
    for note in dataset.notes if leader else []:  # the conversions the recipe asked for, said once
        print(note)
    job = TrainingJob.prepare(arch, dataset, run_dir, spec_data=spec_data, execution=execution, resume=resume,
                              progress=progress, max_steps=max_steps, on_step=on_step,
                              checkpoint_every=checkpoint_every, init=init)  # fmt: skip
    lock = None
    if leader:
        meta = {"backend": backend, "hash": arch.hash, "data": source, "preprocessor": job.preprocessor.to_dict(),
                **({"init_from": str(init_from)} if init else {})}
        lock = run_state.open_run(out, **folder, meta=meta)
    if leader and init is not None:
        print("\n".join(fine_tune.start_report(arch, init, training)))
    elif leader and training.freeze and not resume:
        print(fine_tune.frozen_line(arch, training))
    try:
        if leader and (not resume or allow_recipe_change):
            run_dir.write_spec(spec_data)  # on an allowed recipe change: the recipe the run continues with
        result = _run_loop(trainer, job, run_dir, resume_hint)
        if leader:
            run_dir.write_result({
                "backend": backend, "test_accuracy": result.accuracy, "test_loss": result.loss,
                **result.to_dict(dataset.class_names), "plot": str(run_dir.path / "curves.png"),
                "checkpoint": str(run_dir.checkpoint), "hash": arch.hash,
            })  # fmt: skip
            run_state.update_status(out, "finished")
        return result
    finally:
        if lock is not None:
            lock.release()


def check_before_launch(arch: Architecture, *, backend: str, source: str, out: Path, resume: bool = False,
                        allow_recipe_change: bool = False) -> None:
    """What :func:`train` checks before it creates anything (the run directory's state, the data),
    made once by ``train --workers-local`` before it starts its workers: a wrong input is then one
    line, said once, instead of one line from every worker and the launcher's report of them."""
    run_state.inspect(out, arch_hash=arch.hash, backend=backend, recipe=run_state.recipe_of(training_of(arch)),
                      resume=resume, allow_recipe_change=allow_recipe_change)  # fmt: skip
    data.load(source, arch.spec)


def _run_loop(trainer: Trainer, job: TrainingJob, run_dir: RunDir, resume_hint: str | None) -> Evaluation:
    try:
        return loop.train(trainer, job)
    except TrainingInterrupted as stopped:
        hint = f"; resume with: {resume_hint}" if resume_hint else ""
        raise TrainingInterrupted(f"{stopped}{hint}", stopped.step) from None
    except TrainingDiverged:
        if is_leader():
            run_state.update_status(run_dir.path, "diverged")
        raise
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"stopped at once (a second Ctrl-C), without a checkpoint of this step; --resume "
                                  f"continues from the last one in {run_dir.checkpoint}", -1) from None  # fmt: skip


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
    meta = run_state.read_meta(target) or {}
    arch = build_architecture(target / "spec.yaml")
    if arch.hash != meta.get("hash"):
        raise TrainingError(f"{target}: spec.yaml no longer gives the architecture this run trained ({meta.get('hash')})")
    trainer = trainer_for(backend or str(meta.get("backend")))  # refuses before the data is read
    dataset = data.load(source, arch.spec)
    preprocessor = Preprocessor.from_dict(meta["preprocessor"])
    evaluation = loop.evaluate(trainer, arch, target / "checkpoint", dataset.test, preprocessor)
    return evaluation, dataset.class_names


def trainer_for(name: str) -> Trainer:
    """The backend called ``name``, checked to be able to train."""
    backend = get_backend(name)
    if not isinstance(backend, Trainer):
        raise BackendError(f"backend '{name}' cannot train (it has no training_session/predictor)")
    check = getattr(backend, "check_training", None)  # e.g. Keras on an engine its trainer does not run on
    if check is not None:
        check()  # raises BackendError before anything is written
    return backend


def print_evaluation(evaluation: Evaluation, class_names: list[str], stream: Any = None) -> None:
    stream = sys.stdout if stream is None else stream  # looked up per call: tests and the CLI redirect it
    print(f"test accuracy: {evaluation.accuracy:.2%} (loss {evaluation.loss:.4f})", file=stream)
    names = class_names or [str(i) for i in range(len(evaluation.confusion))]
    width = max(len(n) for n in names) + 2
    print("confusion matrix (rows: true class, columns: predicted):", file=stream)
    print(" " * width + "".join(f"{n[:8]:>9s}" for n in names), file=stream)
    for name, row in zip(names, np.asarray(evaluation.confusion)):
        print(f"{name:<{width}s}" + "".join(f"{int(v):9d}" for v in row), file=stream)
