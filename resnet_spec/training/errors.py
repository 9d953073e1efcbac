"""The errors of training, for the core and every backend (backends import them from here, never
from the command layer). Each carries a one-line message that says what, where and what to do;
the command prints it without a traceback."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A problem that stops training (no training section, a checkpoint of another run, ...)."""


class DataError(ValueError):
    """A data problem (a missing folder, an undecodable image, shapes that disagree with the spec)."""


class TrainingInterrupted(TrainingError):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint; the message says how to resume."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite (``training.on_divergence: stop``); the message names the
    step and the last good checkpoint, which the diverged weights never replaced."""
