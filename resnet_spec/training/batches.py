"""The order of training examples: a pure function of (seed, epoch), so both backends — and a
resumed run — see exactly the same batches."""

from __future__ import annotations

import numpy as np


def epoch_permutation(count: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(count)


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Every example is seen each epoch; the last batch may be smaller."""
    return max(1, -(-count // batch_size))


def batch_indices(count: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = epoch_permutation(count, seed, epoch)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]
