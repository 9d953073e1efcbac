"""The PyTorch training session: :class:`resnet_spec.training.job.TrainingSession` for models of
this backend; the loop that drives it is the core's (:mod:`resnet_spec.training.loop`).

It follows the session contract of :mod:`resnet_spec.training.job`, as the Keras session does:

* start: the job's start weights (the seeded neutral initial weights of
  :func:`resnet_spec.weights.initial_weights` with ``training.seed``, imported ones in their
  place: ``--init-from``); frozen nodes' parameters without ``requires_grad``, their batch norms
  held in eval mode before every step; torch's generator (dropout / drop-path masks) seeded from the seed and the
  rank inside a forked RNG scope, so the caller's generator is left as it was;
* input: a training split held in memory that needs no resizing is preprocessed once and kept as
  one NCHW tensor (on the device when it fits, else in pinned host memory with asynchronous
  copies); anything else (image files, memory maps, HDF5, random-resized crops) streams through
  ``torch.utils.data`` (:mod:`.pipeline`): ``execution.workers`` processes read, decode, resize
  and preprocess this rank's shard of every global batch, a few batches ahead; pad-and-crop and
  flips happen on the device (:mod:`.augment`) with the plan's numbers;
* loss: cross-entropy with label smoothing (PyTorch's definition) on ``head.classifier``'s
  float32 logits (a softmax output layer is not run in training), summed over the shard and
  divided by the global batch (times the world size: DDP averages gradients) + ``kernel_l2 *
  sum(w ** 2)`` over the kernels; optimizers: :mod:`.optim`;
* checkpoint files: :mod:`.checkpoint` (every rank's torch random states; written by rank 0).

Reported numbers: the training ``loss`` is the mean label-smoothed cross-entropy of the epoch's
training batches in training mode (without the L2 term); ``val_loss`` and the test loss are plain
cross-entropy in eval mode. Execution switches and torchrun data parallelism: :mod:`.distributed`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_spec.training.augment import enabled as augmentation_enabled
from resnet_spec.training.errors import TrainingError
from resnet_spec.training.geometry import Geometry
from resnet_spec.training.job import Predictions, TrainingJob
from resnet_spec.training.plan import Shard
from resnet_spec.training.sources import Split

from . import augment, pipeline
from .checkpoint import TRAINING
from .distributed import all_reduce_sum, average_buffers, gather_objects, resolve
from .inference import Inference, logits_net
from .model import build_module
from .optim import freeze, hold_statistics, make_optimizer, set_learning_rate
from .weights import kernel_parameters, set_weights

DEVICE_DATA_FRACTION = 0.3  # keep the training set on the GPU when it takes at most this much of free memory


class Tensors:
    """A preprocessed image set as one NCHW float32 tensor (and labels), on the device when it
    fits, else in pinned host memory; :meth:`batch` gathers examples by index onto the device."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device, *, channels_last: bool = False) -> None:
        self.device = device
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.on_device = device.type == "cpu" or _fits(images.numel() * 4, device)
        if self.on_device:
            self.x = images.to(device).contiguous(memory_format=memory_format)
        else:
            self.x = images.contiguous(memory_format=memory_format).pin_memory()
        self.y = torch.as_tensor(np.asarray(y, np.int64)).to(device)
        self._staging: list[torch.Tensor | None] = [None, None]
        self._events: list[Any] = [None, None]
        self._turn = 0

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        if self.on_device:
            # Advanced indexing, not index_select: on a CPU the network runs measurably slower
            # (about 10% per step for resnet_digits) on index_select's output.
            index = index.to(self.device, non_blocking=True)
            return self.x[index], self.y[index]
        # Pinned host staging, two buffers in turn: a buffer is refilled only after its last
        # asynchronous copy to the device has finished.
        turn, self._turn = self._turn, 1 - self._turn
        if self._events[turn] is not None:
            self._events[turn].synchronize()
        buffer = self._staging[turn]
        if buffer is None or buffer.shape[0] < len(index):
            buffer = torch.empty((max(len(index), 1), *self.x.shape[1:]), dtype=self.x.dtype).pin_memory()
            self._staging[turn] = buffer
        host = buffer[: len(index)]
        torch.index_select(self.x, 0, index, out=host)
        images = host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._events[turn] = event
        return images, self.y.index_select(0, index.to(self.device, non_blocking=True))


def _fits(nbytes: int, device: torch.device) -> bool:
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except Exception:  # noqa: BLE001  # pragma: no cover - not a CUDA device
        return True
    return nbytes <= DEVICE_DATA_FRACTION * free


class TorchSession:
    """One training run of the PyTorch backend: model, optimizer, input, metric sums."""

    backend = "torch"

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.setup = setup = resolve(job.execution)
        self.rank, self.world, self.notes = setup.rank, setup.world, setup.notes
        self._scope = contextlib.ExitStack()
        self._scope.callback(setup.close)
        self._scope.enter_context(torch.random.fork_rng(devices=[setup.device] if setup.device.type == "cuda" else []))
        try:
            self._build(job)
        except BaseException:
            self._scope.close()
            raise

    def _build(self, job: TrainingJob) -> None:
        setup = self.setup
        training, arch, self.plan = job.training, job.arch, job.plan
        torch.manual_seed(_torch_seed(training.seed, setup.rank))
        self.model = build_module(arch)
        set_weights(self.model, arch, job.start_weights())
        self.frozen_norms = freeze(self.model, job.frozen)
        self.model.to(setup.device)
        if setup.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net = logits_net(self.model, arch)
        self.train_net: nn.Module = self.net  # evaluation runs eagerly: one compilation, of the training step
        if setup.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [setup.device.index] if setup.device.type == "cuda" else None
            if _has_forward_sync_buffers():
                self.train_net = DistributedDataParallel(self.net, device_ids=ids, forward_sync_buffers=False)
            else:
                self.train_net = DistributedDataParallel(self.net, device_ids=ids, broadcast_buffers=False)
        if setup.compile:
            self.train_net = cast(nn.Module, torch.compile(self.train_net))
        self.optimizer = make_optimizer(training.optimizer, self.model, arch, head=job.head)
        self.scaler = setup.scaler()
        if setup.distributed and self.plan.smallest_batch() < setup.world:
            raise TrainingError(f"a batch of {self.plan.smallest_batch()} examples cannot be split over {setup.world} "
                                "ranks; use fewer processes or another batch size")  # fmt: skip
        self.geometry = job.geometry(job.train, train=True)
        self.memory: Tensors | None = None
        if job.train.in_memory and self.geometry.mode == "none":
            self.memory = Tensors(job.preprocessor(job.train.read(np.arange(len(job.train)))), job.train.labels,
                                  setup.device, channels_last=setup.channels_last)  # fmt: skip
        workers = job.execution.workers
        self.workers = workers if workers is not None else pipeline.default_workers(job.train, self.geometry)
        self.inference = Inference(self.net, setup.device, job.preprocessor, batch=training.batch_size,
                                   workers=workers, channels_last=setup.channels_last)  # fmt: skip
        self._scope.callback(self.inference.close)
        self.sums = torch.zeros(2, dtype=torch.float64, device=setup.device)  # this rank's loss sum, correct
        self.seen = 0  # this rank's examples in the epoch so far
        self.l2 = [(node.kernel_l2, weight) for node, weight in kernel_parameters(self.model, arch)
                   if node.kernel_l2 and node.name not in job.frozen]  # a frozen kernel's term is a constant: Keras leaves it out  # fmt: skip
        self.padding, self.flip = training.augmentation.random_crop_padding, training.augmentation.horizontal_flip
        self.augment = augmentation_enabled(training.augmentation)
        self.smoothing = float(training.loss.label_smoothing)
        self._last: tuple[torch.Tensor, torch.Tensor | None] | None = None

    # -------------------------------------------------------------- input

    def batches(self, start: int, stop: int) -> Iterator[Any]:
        if self.memory is not None:
            for step in range(start, stop):
                yield self.plan.shard(step, self.rank, self.world), None
            return
        reader = pipeline.ExampleReader(self.job.train, self.geometry, self.job.preprocessor)
        sampler = pipeline.PlanSampler(self.plan, start, stop, self.rank, self.world)
        stream = pipeline.loader(reader, sampler, self.workers, self.setup.device)
        for step, item in zip(range(start, stop), stream):
            yield self.plan.shard(step, self.rank, self.world), pipeline.check(item)

    def _inputs(self, shard: Shard, item: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory is not None:
            return self.memory.batch(shard.indices)
        assert item is not None
        images, labels = item
        device, layout = self.setup.device, torch.channels_last if self.setup.channels_last else torch.contiguous_format
        return images.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous(memory_format=layout), labels.to(device)

    # -------------------------------------------------------------- one step

    def step(self, batch: Any, learning_rate: float) -> None:
        shard, item = batch
        setup = self.setup
        hold_statistics(self.frozen_norms)
        set_learning_rate(self.optimizer, learning_rate)
        images, labels = self._inputs(shard, item)
        if self.augment:
            images = augment.apply(images, torch.from_numpy(shard.tops), torch.from_numpy(shard.lefts),
                                   torch.from_numpy(shard.flips), padding=self.padding, flip=self.flip)  # fmt: skip
        with setup.autocast():
            logits = self.train_net(images)
        per_example = F.cross_entropy(logits.float(), labels, label_smoothing=self.smoothing, reduction="none")
        data_loss = per_example.sum() / shard.count
        loss = data_loss * setup.world if setup.distributed else data_loss  # DDP averages over ranks
        penalty = torch.stack([lam * w.float().square().sum() for lam, w in self.l2]).sum() if self.l2 else None
        if penalty is not None:
            loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum()
            self.sums += torch.stack([per_example.sum().double(), correct.double()])
        self.seen += len(shard)
        self._last = (data_loss.detach(), None if penalty is None else penalty.detach())

    def last_loss(self) -> float:
        assert self._last is not None
        data_loss, penalty = self._last
        objective = all_reduce_sum(data_loss, self.setup)
        return float(objective if penalty is None else objective + penalty)

    # -------------------------------------------------------------- metrics and agreement

    def running_sums(self) -> np.ndarray:
        return np.array([*self.sums.tolist(), float(self.seen)])

    def metric_sums(self) -> np.ndarray:
        local = torch.tensor(self.running_sums(), dtype=torch.float64, device=self.setup.device)
        return all_reduce_sum(local, self.setup).cpu().numpy()

    def set_metric_sums(self, sums: np.ndarray) -> None:
        """The global sums are carried by rank 0; the others start from zero."""
        values = np.asarray(sums, np.float64) if self.rank == 0 else np.zeros(3)
        self.sums.copy_(torch.tensor(values[:2], dtype=torch.float64))
        self.seen = int(values[2])

    def agree(self, flag: bool) -> bool:
        return bool(all_reduce_sum(torch.tensor([int(flag)], device=self.setup.device), self.setup).item())

    def broadcast(self, value: str | None) -> str | None:
        return cast(str | None, gather_objects(value, self.setup)[0])

    def synchronize(self) -> None:
        average_buffers(self.model, self.setup, self.frozen_norms)

    # -------------------------------------------------------------- checkpoints

    def checkpoint_writer(self) -> Callable[[Path], None] | None:
        states = gather_objects(_rng_state(self.setup.device), self.setup)
        if self.rank != 0:
            return None
        payload = {
            "model": {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": states,
        }
        return lambda folder: torch.save(payload, folder / TRAINING)

    def restore(self, folder: Path, state: dict[str, Any]) -> None:
        payload = torch.load(folder / TRAINING, map_location="cpu", weights_only=True)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        states = payload.get("rng") or []
        if len(states) == self.world:
            _set_rng_state(states[self.rank], self.setup.device)
        else:
            if self.rank == 0:
                print(f"note: the checkpoint holds random states of {len(states)} ranks, this run has {self.world}; "
                      "dropout masks are reseeded", file=sys.stderr)  # fmt: skip
            torch.manual_seed(_torch_seed(self.job.training.seed, self.rank, int(state["step"])))

    # -------------------------------------------------------------- the end

    def predict(self, split: Split, geometry: Geometry) -> Predictions:
        return self.inference.predict(split, geometry)

    def finish(self) -> Any:
        return self.model

    def close(self) -> None:
        self._scope.close()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _torch_seed(seed: int, rank: int, step: int = 0) -> int:
    return int(np.random.default_rng([seed, 104729, rank, step]).integers(0, 2**63 - 1))


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


__all__ = ["TorchSession"]


def _has_forward_sync_buffers() -> bool:
    """Norm statistics stay per rank during a step (averaged at epoch ends): no buffer sync in the
    forward pass. ``forward_sync_buffers`` replaces ``broadcast_buffers`` in newer PyTorch (both
    still sync once at construction, where every rank holds the same statistics)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    return "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
