"""The plan of a run: which examples every step trains on, with which random numbers, and how a
global batch is split between processes or replicas. A pure function of the recipe and the
training set's size, so both backends, every rank and a resumed run follow the same plan.

Step ``s`` is batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch``: that slice of
the epoch's permutation (:mod:`.batches`; the last batch of an epoch may be smaller). A global
batch of ``count`` examples is split into ``parts`` contiguous shards (``np.array_split``: the
first ones one example larger), shard ``i`` going to rank (or replica) ``i``: every rank reads
only its shard of every global batch (DistributedSampler's semantics, in the global order), and
the shards' summed losses over the global count give the single-process gradient."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spec import Training
from . import augment, geometry
from .batches import epoch_permutation, steps_per_epoch
from .schedule import total_steps


@dataclass(frozen=True)
class Shard:
    """One rank's (or replica's) part of the global batch of one step."""

    step: int
    epoch: int
    batch: int
    count: int  # examples in the global batch: the loss is summed over the shard and divided by it
    indices: np.ndarray  # into the training split
    tops: np.ndarray  # pad-and-crop offsets and flips (device augmentation; zeros when off)
    lefts: np.ndarray
    flips: np.ndarray
    crops: np.ndarray | None  # (n, TRIES, 4) random-resized-crop draws, None when off

    def __len__(self) -> int:
        return len(self.indices)


class Plan:
    def __init__(self, training: Training, count: int) -> None:
        self.training, self.count = training, count
        self.batch_size, self.seed = training.batch_size, training.seed
        self.steps_per_epoch = steps_per_epoch(count, self.batch_size)
        self.total = total_steps(training, self.steps_per_epoch)
        self.epochs = -(-self.total // self.steps_per_epoch)
        self._orders: dict[int, np.ndarray] = {}  # the last two epochs' permutations

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                del self._orders[min(self._orders)]
            self._orders[epoch] = epoch_permutation(self.count, self.seed, epoch)
        return self._orders[epoch]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch) of a step."""
        return divmod(step, self.steps_per_epoch)

    def shard(self, step: int, part: int = 0, parts: int = 1) -> Shard:
        epoch, batch = self.position(step)
        order = self._permutation(epoch)
        indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
        count = len(indices)
        settings = self.training.augmentation
        tops, lefts, flips = augment.draw(settings, count, augment.generator(self.seed, epoch, batch))
        crop = settings.random_resized_crop
        crops = geometry.crop_draws(crop, self.seed, epoch, batch, count) if crop is not None else None
        if parts > 1:
            if count < parts:
                raise ValueError(f"a batch of {count} examples cannot be split over {parts} parts")
            where = np.array_split(np.arange(count), parts)[part]
            indices, tops, lefts, flips = indices[where], tops[where], lefts[where], flips[where]
            crops = crops[where] if crops is not None else None
        return Shard(step, epoch, batch, count, indices, tops, lefts, flips, crops)

    def smallest_batch(self) -> int:
        """The size of the smallest global batch of the run (the last of an epoch, or a full one)."""
        return min(self.batch_size, self.count % self.batch_size or self.batch_size, self.count)
