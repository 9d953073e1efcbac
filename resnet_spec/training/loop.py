"""The training loop, once for every backend: steps, epochs, validation, metrics and events,
checkpoints (at epoch ends, every ``checkpoint_every`` steps, at ``max_steps``; with validation
data, the best epoch's kept in ``checkpoint-best/``), exact resume, a
progress bar, and Ctrl-C / SIGTERM (the run stops after the step in progress, saves a checkpoint
and says how to resume). A backend supplies the :class:`~.job.TrainingSession` it drives.

Under several processes (torchrun ranks, TensorFlow workers) every rank runs this loop; the
collectives (metric sums, checkpoint state, agreeing to stop) are called at the same steps on
every rank, and only the chief (rank 0) writes the run directory and prints.
"""

from __future__ import annotations

import math
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Self

import numpy as np

from . import checkpoint
from .errors import TrainingDiverged, TrainingError, TrainingInterrupted
from .job import Evaluation, Predictor, Trainer, TrainingJob, TrainingSession, describe_epoch, epoch_row, score_all
from .preprocess import Preprocessor
from .schedule import learning_rate
from .sources import Split

PROGRESS_SECONDS = 0.5
STOP_POLL_STEPS = 10  # several processes agree on stopping every this many steps (a collective)
# The loss is checked for NaN / infinity every this many steps (a device read; a collective under
# several processes), at every epoch's end and before every checkpoint.
DIVERGENCE_POLL_STEPS = 10


def train(trainer: Trainer, job: TrainingJob) -> Evaluation:
    """Train (or resume) ``job`` with ``trainer``'s session; the test-set evaluation of the result
    on every rank. ``job.extra["model"]`` is the trained network afterwards."""
    job.training  # noqa: B018 - the missing-recipe error, before a backend starts
    session = trainer.training_session(job)
    try:
        run = _Run(job, session)
        if session.rank == 0:
            for note in session.notes:
                print(f"note: {note}", file=sys.stderr)
        if job.resume:
            run.resume()
        run.run()
        session.synchronize()
        job.extra["model"] = session.finish()
        return score_all(session.predict(job.test, job.geometry(job.test, train=False)), job.classes)
    finally:
        session.close()
        job.run_dir.close()


def evaluate(trainer: Trainer, arch: Any, weights: Path, split: Split, preprocessor: Preprocessor | None = None,
             execution: Any = None) -> Evaluation:  # fmt: skip
    """Evaluate a run's checkpoint folder (checked to be of ``arch``; its preprocessor unless one
    is given) or a model file the backend saved (``preprocessor`` required) on ``split``."""
    from .geometry import geometry_for

    weights = Path(weights)
    if not weights.is_file():
        folder, state = checkpoint.for_evaluation(weights, arch.hash)
        weights, preprocessor = folder, preprocessor or Preprocessor.from_dict(state["preprocessor"])
    if preprocessor is None:
        raise TrainingError(f"{weights}: a saved model holds no preprocessor; pass one")
    predictor: Predictor = trainer.predictor(arch, weights, preprocessor, execution)
    return score_all(predictor.predict(split, geometry_for(split, arch.spec, train=False)), arch.spec.classes)


class _Run:
    def __init__(self, job: TrainingJob, session: TrainingSession) -> None:
        self.job, self.session, self.plan = job, session, job.plan
        self.chief = session.rank == 0
        self.step = 0
        stop = self.plan.total if job.max_steps is None else min(self.plan.total, job.max_steps)
        self.stop = max(stop, 0)
        self.saved_at = -1
        self.finite_at = 0  # the loss was finite up to this step (0: nothing checked yet)
        self.warned = False
        self.validating = job.validation is not None and len(job.validation) > 0  # the same on every rank
        self.scored: tuple[int, float, float] | None = None  # (step, val accuracy, val loss) of the last epoch end
        self.best: tuple[float, float] | None = None  # (val accuracy, val loss) of checkpoint-best (the chief's)

    # -------------------------------------------------------------- resume

    def resume(self) -> None:
        target = self.job.run_dir.checkpoint
        found = checkpoint.recover(target, _warn) if self.chief else checkpoint.locate(target)
        shared = self.session.broadcast(str(found) if found is not None else None)
        if shared is None:
            choice = checkpoint.choose(target)
            why = f": {choice.describe_rejected()}" if choice.rejected else " (no complete checkpoint)"
            raise TrainingError(f"{self.job.run_dir.path}: nothing to resume{why}; start afresh without --resume")
        folder = Path(shared)
        state = checkpoint.check_resumable(folder, self.job.arch.hash, self.plan.steps_per_epoch)
        self.session.restore(folder, state)
        self.step = self.saved_at = self.finite_at = int(state["step"])
        self.session.set_metric_sums(np.asarray(state["epoch_sums"], np.float64))
        if self.chief:
            self.best = _resume_best(self.job.run_dir.best, folder, state)
            self.job.run_dir.truncate_history(self.step // self.plan.steps_per_epoch, self.step)
            epoch, batch = self.plan.position(self.step)
            print(f"resumed at step {self.step} (epoch {epoch + 1}, batch {batch + 1})", file=sys.stderr)

    # -------------------------------------------------------------- the loop

    def run(self) -> None:
        if self.step >= self.stop:
            return
        job, session, plan = self.job, self.session, self.plan
        spe, every = plan.steps_per_epoch, job.every
        bar = _progress(job, self.chief, self.step, self.stop, plan.epochs)
        rate = learning_rate(job.training, max(self.step - 1, 0), spe)
        started = shown = time.perf_counter()
        with _StopRequest(self.chief) as stop_request:
            batches = session.batches(self.step, self.stop)
            try:
                for batch in batches:
                    if self.step % spe == 0:
                        session.set_metric_sums(np.zeros(3))
                        started = time.perf_counter()
                    rate = learning_rate(job.training, self.step, spe)
                    session.step(batch, rate)
                    self.step += 1
                    if job.on_step is not None:
                        job.on_step(self.step - 1, rate, session.last_loss())
                    bar.update(1)
                    if self.step % DIVERGENCE_POLL_STEPS == 0 or self.step == self.stop:
                        self._poll_divergence()
                    if not bar.disable and time.perf_counter() - shown > PROGRESS_SECONDS:
                        bar.set_postfix(_postfix(session.running_sums(), rate), refresh=False)
                        shown = time.perf_counter()
                    sums = None
                    if self.step % spe == 0 or self.step == plan.total:
                        sums = self._end_epoch(rate, time.perf_counter() - started, bar)
                    best = sums is not None and self._new_best()
                    due = self.step == self.stop or (every is not None and self.step % every == 0) or (
                        sums is not None and job.training.checkpoint_every_epoch)
                    if due or best:  # a best epoch is saved as the latest checkpoint, then kept as the best
                        self._save(sums, best=best)
                    if self._stopping(stop_request.requested):
                        if self.saved_at != self.step:
                            self._save(sums)
                        raise self._interrupted()
                    if self.step >= self.stop:
                        break
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
                bar.close()

    # -------------------------------------------------------------- divergence

    def _poll_divergence(self) -> None:
        loss_sum = float(self.session.running_sums()[0])
        bad = not math.isfinite(loss_sum)
        if self.session.world > 1:
            bad = self.session.agree(bad)
        self._check_finite(loss_sum if bad else 0.0)

    def _check_finite(self, loss_sum: float) -> None:
        """Stop (``on_divergence: stop``) or warn once when ``loss_sum`` (this epoch's) is not finite."""
        if math.isfinite(loss_sum):
            self.finite_at = self.step
            return
        if self.job.training.on_divergence == "continue":
            if self.chief and not self.warned:
                print(f"warning: {self._divergence(loss_sum)}; training on (training.on_divergence: continue)",
                      file=sys.stderr)  # fmt: skip
            self.warned = True
            return
        raise TrainingDiverged(
            f"{self._divergence(loss_sum)}; {self._last_good()}; lower the learning rate (or add warmup) and "
            "resume, or set training.on_divergence: continue to train on regardless"
        )  # fmt: skip

    def _divergence(self, loss_sum: float) -> str:
        first = self.finite_at + 1
        where = f"at step {self.step}" if first >= self.step else f"in steps {first}-{self.step}"
        epoch = (self.step - 1) // self.plan.steps_per_epoch + 1
        value = "NaN" if math.isnan(loss_sum) else "infinite"
        return f"training diverged: the loss became {value} {where} (epoch {epoch})"

    def _last_good(self) -> str:
        if self.saved_at < 0:
            return "no checkpoint was saved before it"
        return (f"the last good checkpoint, {self.job.run_dir.checkpoint} (step {self.saved_at}), is kept: "
                "--resume continues from it")  # fmt: skip

    def _stopping(self, requested: bool) -> bool:
        if self.session.world == 1:
            return requested
        if self.step % STOP_POLL_STEPS and self.step != self.stop:
            return False
        return self.session.agree(requested)

    def _interrupted(self) -> TrainingInterrupted:
        epoch, done = self.plan.position(self.step - 1)
        return TrainingInterrupted(
            f"interrupted after step {self.step} ({done + 1} of the {self.plan.steps_per_epoch} steps of epoch "
            f"{epoch + 1}); the checkpoint in {self.job.run_dir.checkpoint} holds it: the same command with --resume "
            "continues exactly there", self.step,
        )  # fmt: skip

    def _end_epoch(self, rate: float, seconds: float, bar: Any) -> np.ndarray:
        self.session.synchronize()
        sums = self.session.metric_sums()
        self._check_finite(float(sums[0]))
        if self.chief:
            row = epoch_row(self.step // self.plan.steps_per_epoch + (self.step % self.plan.steps_per_epoch > 0),
                            self.step, rate, sums, seconds)  # fmt: skip
            validation = self.job.validation
            if validation is not None and len(validation):
                val = score_all(self.session.predict(validation, self.job.geometry(validation, train=False)),
                                self.job.classes)  # fmt: skip
                row["val_loss"], row["val_accuracy"] = val.loss, val.accuracy
                self.scored = (self.step, val.accuracy, val.loss)
            self.job.run_dir.log_epoch(row)
            bar.write(describe_epoch(row, self.plan.epochs), file=sys.stdout)
        return sums

    # -------------------------------------------------------------- checkpoints

    def _new_best(self) -> bool:
        """Whether the epoch that just ended scored better on the validation data than the
        best checkpoint (every rank calls it at every epoch end: under several processes the
        chief's answer is shared by a collective, since only the chief validates)."""
        if not self.validating:
            return False
        found = self.chief and self.scored is not None and self.scored[0] == self.step and \
            better(self.scored[1:], self.best)
        return self.session.agree(found) if self.session.world > 1 else found

    def _save(self, sums: np.ndarray | None, *, best: bool = False) -> None:
        session, job = self.session, self.job
        session.synchronize()
        sums = session.metric_sums() if sums is None else sums
        self._check_finite(float(sums[0]))  # never a checkpoint of diverged weights (in place of a good one)
        writer = session.checkpoint_writer()
        state = {
            "backend": session.backend, "hash": job.arch.hash, "step": self.step,
            "epoch": self.step // self.plan.steps_per_epoch, "steps_per_epoch": self.plan.steps_per_epoch,
            "epoch_sums": [float(v) for v in sums], "preprocessor": job.preprocessor.to_dict(),
            "mixed_precision": job.execution.mixed_precision, "world_size": session.world,
        }  # fmt: skip
        if self.scored is not None and self.scored[0] == self.step:
            state["validation"] = {"accuracy": self.scored[1], "loss": self.scored[2]}
        if self.chief:
            assert writer is not None  # the chief always writes its state
            job.run_dir.create()
            checkpoint.save(job.run_dir.checkpoint, writer, state)
            if best and self.scored is not None:
                checkpoint.keep_copy(job.run_dir.checkpoint, job.run_dir.best)
                self.best = self.scored[1:]
        elif writer is not None:  # another worker takes part in writing (TensorFlow) into scratch
            with tempfile.TemporaryDirectory() as scratch:
                writer(Path(scratch))
        self.saved_at = self.step


def better(score: tuple[float, float], than: tuple[float, float] | None) -> bool:
    """Whether (validation accuracy, validation loss) ``score`` beats ``than``: the higher
    accuracy; on a tie the lower loss (a NaN loss never wins); a full tie keeps the earlier epoch."""
    if than is None:
        return True
    if score[0] != than[0]:
        return score[0] > than[0]
    return math.isfinite(score[1]) and not score[1] >= than[1]


def _resume_best(target: Path, resumed: Path, state: dict[str, Any]) -> tuple[float, float] | None:
    """The score of the best checkpoint a resumed run continues with. A best one of a later step
    than the checkpoint resumed (possible only when a damaged latest one fell back to its
    previous) is dropped, as the history of those steps is; the resumed checkpoint itself becomes
    the best one when it scored better (a stop between its write and the copy)."""
    step = int(state["step"])
    checkpoint.drop_after(target, step)
    found = checkpoint.recover(target, _warn)
    score = None
    if found is not None:
        kept = checkpoint.read_state(found).get("validation")
        score = (float(kept["accuracy"]), float(kept["loss"])) if isinstance(kept, dict) else None
    mine = state.get("validation")
    if isinstance(mine, dict) and better((float(mine["accuracy"]), float(mine["loss"])), score):
        checkpoint.keep_copy(resumed, target)
        score = (float(mine["accuracy"]), float(mine["loss"]))
    return score


def _progress(job: TrainingJob, chief: bool, start: int, stop: int, epochs: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=stop, initial=start, unit="step", disable=not (job.progress and chief), leave=False,
                dynamic_ncols=True, file=sys.stderr, desc=f"{epochs} epoch{'s' * (epochs != 1)}")  # fmt: skip


def _postfix(sums: np.ndarray, rate: float) -> dict[str, str]:
    loss_sum, correct, seen = (float(v) for v in sums)
    return {"loss": f"{loss_sum / max(seen, 1):.4f}", "acc": f"{correct / max(seen, 1):.2%}", "lr": f"{rate:.3g}"}


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM set :attr:`requested`: the loop stops after the step in
    progress, once the checkpoint is saved. A second Ctrl-C stops at once (KeyboardInterrupt).
    Signal handlers exist only in the main thread: elsewhere nothing changes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, chief: bool) -> None:
        self.chief, self.requested = chief, False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if self.chief:
            print(f"\n{signal.Signals(number).name}: stopping after this step to save a checkpoint "
                  "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
