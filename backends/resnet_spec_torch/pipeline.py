"""The PyTorch input pipeline: ``torch.utils.data`` reading a split for the core's plan.

* :class:`ExampleReader`, a map-style ``Dataset`` whose items are whole requests (a shard of a
  global batch, :class:`resnet_spec.training.plan.Shard`, or an evaluation block): it reads the
  examples (a batch read for arrays and memory maps; Pillow decoding for image files), brings each
  to the input's size (:mod:`resnet_spec.training.geometry`, with ``F.interpolate``: bilinear,
  half-pixel centres, antialiased when asked) and applies the preprocessor, returning an NHWC
  float32 tensor and the labels;
* :class:`PlanSampler`, the sampler: the requests of this rank for a range of steps, in order
  (each rank reads only its shard of every global batch: DistributedSampler's semantics with the
  core's global order);
* :func:`loader`: the ``DataLoader`` over them: ``workers`` processes (each with one intra-op
  thread, ignoring Ctrl-C: the training process decides), pinned memory on CUDA, ``prefetch``
  requests per worker in flight; evaluation loaders keep their workers between epochs.

Workers compute nothing random: every random number is in the request, drawn by the core."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from resnet_spec.training.errors import DataError
from resnet_spec.training.geometry import Geometry
from resnet_spec.training.geometry import apply as geometry_apply
from resnet_spec.training.plan import Plan
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.sources import Split

PREFETCH = 4  # requests in flight per worker
MAX_AUTO_WORKERS = 8
# A worker's batch of at least this many bytes goes to the training process through shared memory
# (torch's handover: a file-descriptor exchange with the worker, about a millisecond, and no copy);
# a smaller one is pickled with the labels (a copy of a few kilobytes costs less than the exchange:
# the digits' 8x8 batches cost the training process 17% more CPU through shared memory).
SHARED_MEMORY_BYTES = 1 << 20


@dataclass(frozen=True)
class Block:
    """An evaluation request: consecutive examples, no random numbers."""

    indices: np.ndarray
    crops: None = None


def default_workers(split: Split, geometry: Geometry) -> int:
    """No workers for data in memory that needs no resizing; else one per CPU core, at most 8."""
    if split.in_memory and geometry.mode == "none":
        return 0
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def resize(image: np.ndarray, height: int, width: int, antialias: bool) -> np.ndarray:
    """(h, w, c) -> (height, width, c) float32 by ``F.interpolate`` (bilinear, half-pixel centres),
    as a view. The input is made NCHW-contiguous first: the antialiased kernel runs about 1.6x
    faster on it than on the channels-last view of an HWC array (the same values)."""
    if not image.flags.writeable:  # decoded by Pillow or memory-mapped: torch wants a writable buffer
        image = image.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().contiguous()
    out = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False, antialias=antialias)
    return out[0].permute(1, 2, 0).numpy()


def transform(image: np.ndarray, geometry: Geometry, draws: np.ndarray | None) -> np.ndarray:
    """One decoded example (uint8 HWC) brought to the input's size as float32."""
    return geometry_apply(image, geometry, draws, resize)


class ExampleReader(Dataset[Any]):
    def __init__(self, split: Split, geometry: Geometry, preprocessor: Preprocessor) -> None:
        self.split, self.geometry, self.preprocessor = split, geometry, preprocessor

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, request: Any) -> tuple[Any, Any]:
        """(NHWC float32 images, int64 labels) of the request; (message, None) for a data error,
        raised by the training process (a worker's exception would arrive with its traceback)."""
        try:
            images = self.read(request.indices, request.crops)
        except DataError as exc:
            return str(exc), None
        # Labels as a list: pickled with the message, where a tensor would take a second
        # file-descriptor exchange with the worker (torch's shared-memory handover) per batch.
        labels = self.split.labels[request.indices].tolist()
        if get_worker_info() is not None and not images.is_shared():
            return images.numpy(), labels  # small: pickled by value (SHARED_MEMORY_BYTES)
        return images, labels

    def read(self, indices: np.ndarray, crops: np.ndarray | None) -> torch.Tensor:
        """The preprocessed (n, H, W, C) float32 batch. Each example is preprocessed as soon as it
        is resized, in place, while it is still in the CPU's cache. In a worker process a large
        batch is allocated in shared memory, as DataLoader's own collation does: sending it to the
        training process then copies nothing."""
        geometry, pre = self.geometry, self.preprocessor
        arrays = None if self.split.is_files else self.split.read(indices)
        shape = (len(indices), geometry.height, geometry.width, geometry.channels)
        batch = torch.empty(shape, dtype=torch.float32)
        if get_worker_info() is not None and batch.nbytes >= SHARED_MEMORY_BYTES:
            batch.share_memory_()
        out = batch.numpy()
        if arrays is not None and geometry.mode == "none":
            out[...] = arrays
            pre.apply_inplace(out)
            return batch
        for k, index in enumerate(indices):
            image = self.split.decode(int(index), geometry.channels) if arrays is None else arrays[k]
            out[k] = transform(image, geometry, None if crops is None else crops[k])
            pre.apply_inplace(out[k])
        return batch


class PlanSampler(Sampler[Any]):
    """This rank's shards of steps ``start`` .. ``stop - 1``."""

    def __init__(self, plan: Plan, start: int, stop: int, rank: int, world: int) -> None:
        self.plan, self.start, self.stop, self.rank, self.world = plan, start, stop, rank, world

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[Any]:
        for step in range(self.start, self.stop):
            yield self.plan.shard(step, self.rank, self.world)


class BlockSampler(Sampler[Any]):
    """Consecutive blocks of ``size`` examples of a split of ``count``: evaluation order."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    def __len__(self) -> int:
        return (self.count + self.size - 1) // self.size

    def __iter__(self) -> Iterator[Any]:
        for start in range(0, self.count, self.size):
            yield Block(np.arange(start, min(start + self.size, self.count)))


def _as_is(item: Any) -> Any:
    """The loader's collate function: an item is already a batch (DataLoader's default would turn
    a small batch's array back into a tensor, sent through shared memory)."""
    return item


def _worker_init(_: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process' to handle


def loader(reader: ExampleReader, sampler: Sampler[Any], workers: int, device: torch.device, *,
           persistent: bool = False) -> DataLoader[Any]:  # fmt: skip
    # Its own generator: a DataLoader draws its workers' base seed from the global one otherwise,
    # which would shift the dropout masks of the steps that follow (and break exact resume).
    return DataLoader(reader, batch_size=None, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                      prefetch_factor=PREFETCH if workers else None, persistent_workers=persistent and workers > 0,
                      worker_init_fn=_worker_init if workers else None, generator=torch.Generator(),
                      collate_fn=_as_is)  # fmt: skip


def check(item: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's item, or the data error a worker reported."""
    images, labels = item
    if labels is None:
        raise DataError(images)
    if isinstance(images, np.ndarray):  # a small batch from a worker, pickled by value
        images = torch.from_numpy(images)
    return images, torch.tensor(labels, dtype=torch.int64)
