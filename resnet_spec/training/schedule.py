"""The learning rate at every step, one definition for every backend.

Steps count from 0. A piecewise boundary b means: steps < b use the multiplier before it, step b
and later the one after it (boundaries [2] -> steps 0, 1 at x1, step 2 at the next multiplier:
PyTorch's MultiStepLR counting; Keras' PiecewiseConstantDecay is one step later, so the Keras
trainer does not use it). Epoch boundaries are converted with the number of steps per epoch.
Warm-up scales linearly from ``start_multiplier`` at step 0 to 1 at step ``iterations``,
multiplying the schedule's value.
"""

from __future__ import annotations

import bisect
import math

from ..spec import CosineSchedule, PiecewiseSchedule, Training


def total_steps(training: Training, steps_per_epoch: int) -> int:
    if training.iterations is not None:
        return training.iterations
    return (training.epochs or 1) * steps_per_epoch


def learning_rate(training: Training, step: int, steps_per_epoch: int) -> float:
    base = training.optimizer.learning_rate
    schedule = training.schedule
    if isinstance(schedule, PiecewiseSchedule):
        per_unit = steps_per_epoch if schedule.unit == "epoch" else 1
        boundaries = [b * per_unit for b in schedule.boundaries]
        factor = schedule.multipliers[bisect.bisect_right(boundaries, step)]
    elif isinstance(schedule, CosineSchedule):
        total = max(1, total_steps(training, steps_per_epoch))
        progress = min(step, total) / total
        factor = schedule.final_multiplier + (1 - schedule.final_multiplier) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1.0
    if training.warmup is not None and step < training.warmup.iterations:
        start = training.warmup.start_multiplier
        factor *= start + (1 - start) * step / training.warmup.iterations
    return base * factor
