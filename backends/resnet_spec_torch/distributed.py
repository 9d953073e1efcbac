"""Execution switches (:class:`resnet_spec.spec.Execution`) and data-parallel training for the
PyTorch trainer.

* ``device``: ``auto`` is CUDA when PyTorch sees a GPU, else the CPU; ``cpu`` always the CPU;
  ``gpu`` without CUDA is an error (never a silent fallback).
* ``mixed_precision``: ``bfloat16`` runs forward passes under ``torch.autocast`` in bfloat16
  (works on a CPU too); ``float16`` under autocast in float16 with a ``torch.amp.GradScaler``
  (dynamic loss scaling). Parameters, optimizer state and the loss stay float32.
* ``channels_last``: model and input batches in ``torch.channels_last`` memory format.
* ``compile``: ``torch.compile`` of the training network; when inductor cannot compile here
  (no C++ compiler, an unsupported platform) the run goes on eagerly with a warning.

Data parallelism: when started by ``torchrun`` (``WORLD_SIZE`` > 1), :func:`resolve` initializes
``torch.distributed`` (gloo on the CPU, NCCL on CUDA; device ``cuda:LOCAL_RANK``) and the
trainer wraps the network in ``DistributedDataParallel``. Every rank follows the same plan
(:mod:`resnet_spec.training.plan`); each reads only its contiguous shard (``np.array_split``) of
every global batch, whose size stays the spec's ``batch_size`` (its DataLoader decodes nothing
else). Each rank's loss is its examples' summed cross-entropy over the
*global* batch size times the world size (DDP averages gradients over ranks) plus the L2 term,
so the averaged gradient equals the single-process one. Batch-norm statistics are per rank
during a step (as in DDP without SyncBatchNorm) and averaged over ranks at every epoch end and
checkpoint, so all ranks hold identical weights. Rank 0 alone writes logs and checkpoints::

    torchrun --standalone --nproc_per_node=2 -m resnet_spec.cli train SPEC --backend torch ...
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from resnet_spec.backends import BackendError
from resnet_spec.spec import Execution

AMP_DTYPES = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Setup:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    rank: int = 0
    world: int = 1
    owns_group: bool = False  # this trainer initialized torch.distributed and shuts it down
    notes: list[str] = field(default_factory=list)

    @property
    def chief(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> Any:
        if self.amp_dtype is not torch.float16:
            return None
        return torch.amp.GradScaler(self.device.type)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def resolve(execution: Execution) -> Setup:
    world = world_size()
    notes: list[str] = []
    cuda = torch.cuda.is_available()
    if execution.device == "gpu" and not cuda:
        raise BackendError(
            "execution.device is 'gpu' but PyTorch sees no GPU (torch.cuda.is_available() is False: "
            f"torch {torch.__version__} built {'with' if torch.version.cuda else 'without'} CUDA); "
            "use --device cpu or auto"
        )
    use_cuda = cuda and execution.device in ("auto", "gpu")
    rank, owns = 0, False
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
            owns = True
        rank, world = dist.get_rank(), dist.get_world_size()
    if use_cuda:
        device = torch.device("cuda", local_rank % torch.cuda.device_count() if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    amp = AMP_DTYPES[execution.mixed_precision]
    if amp is torch.float16 and device.type == "cpu":
        notes.append("float16 mixed precision on a CPU is slow (it exists for GPUs); bfloat16 suits CPUs better")
    compile_ok = False
    if execution.compile:
        compile_ok, reason = inductor_works(device)
        if not compile_ok:
            message = f"torch.compile is not available here, training eagerly ({reason})"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            notes.append(message)
    return Setup(device, amp, execution.channels_last, compile_ok, rank, world, owns, notes)


_INDUCTOR: dict[str, tuple[bool, str]] = {}


def inductor_works(device: torch.device) -> tuple[bool, str]:
    """Whether ``torch.compile`` (inductor) can compile and run a small function with a backward
    pass on ``device``; (False, why) otherwise. Cached per device type."""
    key = device.type
    if key not in _INDUCTOR:
        try:
            x = torch.ones(4, device=device, requires_grad=True)
            fn = torch.compile(lambda t: (t * 2.0 + 1.0).relu().sum())
            fn(x).backward()
            _INDUCTOR[key] = (True, "")
        except Exception as exc:  # noqa: BLE001 - inductor raises many types (BackendCompilerFailed, CalledProcessError...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _INDUCTOR[key] = (False, f"{type(exc).__name__}: {first[:300]}")
    return _INDUCTOR[key]


def all_reduce_sum(tensor: torch.Tensor, setup: Setup) -> torch.Tensor:
    """The sum over ranks (a copy); the tensor itself when not distributed."""
    if not setup.distributed:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def average_buffers(module: torch.nn.Module, setup: Setup, frozen: Collection[torch.nn.Module] = ()) -> None:
    """Average floating-point buffers (norm running statistics) over ranks, in place; the
    ``frozen`` modules' are equal on every rank and stay as they are (an average of three equal
    floats need not give the float back)."""
    if not setup.distributed:
        return
    kept = {id(buffer) for part in frozen for buffer in part.buffers()}
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point() and id(buffer) not in kept:
                dist.all_reduce(buffer)
                buffer.div_(setup.world)


def gather_objects(value: Any, setup: Setup) -> list[Any]:
    if not setup.distributed:
        return [value]
    out: list[Any] = [None] * setup.world
    dist.all_gather_object(out, value)
    return out


def barrier(setup: Setup) -> None:
    if setup.distributed:
        dist.barrier()
