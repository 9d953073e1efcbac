"""Execution switches (:class:`resnet_spec.spec.Execution`) and scale-out for the Keras trainer.

* ``device``: ``auto`` uses the GPU(s) TensorFlow sees, else the CPU; ``cpu`` pins everything
  to ``/CPU:0`` even when GPUs exist; ``gpu`` without a visible GPU is an error (it never falls
  back silently).
* ``mixed_precision``: ``bfloat16`` / ``float16`` build the model under Keras'
  ``mixed_bfloat16`` / ``mixed_float16`` policy (float32 variables, low-precision compute; the
  loss is computed from float32 logits). ``float16`` adds dynamic loss scaling
  (``keras.optimizers.LossScaleOptimizer``). Both run on a CPU, slowly: they exist for GPUs.
* ``channels_last``: a no-op: Keras builds NHWC models already (it is a PyTorch memory-format
  switch).
* ``compile``: the per-replica training step is compiled with XLA (``jit_compile=True``).

Scale-out, from ``TrainingJob.extra["strategy"]`` or the environment:

* ``None`` (default): ``tf.distribute.MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes
  a cluster of more than one task (what ``resnet-spec train --workers-local N`` sets up for N local
  workers, and what each machine of a multi-machine run sets by hand); else
  ``MirroredStrategy`` over every visible GPU when there is more than one; else no strategy;
* ``"mirrored"``: ``MirroredStrategy`` over the GPUs, or over the CPU when there are none
  (one replica, or one per logical CPU device configured with
  ``tf.config.set_logical_device_configuration``: how the tests run two replicas on a CPU);
* ``"multi_worker"``: ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``, e.g. for
  worker 0 of two::

      TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                  "task": {"type": "worker", "index": 0}}'   # index 1 on host2

Every worker computes the same plan; each reads only its replicas' shards of every global batch
(``distribute_datasets_from_function``: tf.data sharding by the plan); worker 0 (or the ``chief``
task) writes the run directory, the others write their checkpoints to scratch folders.
:func:`resolve` creates the strategy before anything starts TensorFlow's runtime, which it must.

Every replica's loss is its examples' summed cross-entropy divided by the *global* batch size
(plus the L2 term divided by the number of replicas), so summed gradients equal the
single-device ones. Batch norm statistics are per replica (not synchronized).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from resnet_spec.backends import BackendError
from resnet_spec.spec import Execution

POLICIES = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
STRATEGIES = (None, "default", "mirrored", "multi_worker")


@dataclass
class Setup:
    strategy: Any  # a tf.distribute.Strategy (the default one when not distributing)
    device: str | None  # pin everything here when not distributing ("/CPU:0", "/GPU:0")
    policy: str | None  # Keras dtype policy name for the model, None = float32
    jit: bool
    distributed: bool
    worker: int = 0  # this process' rank among the workers (0: the chief)
    workers: int = 1  # processes taking part
    notes: list[str] = field(default_factory=list)

    @property
    def chief(self) -> bool:
        return self.worker == 0

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if self.device is not None:
                stack.enter_context(tf.device(self.device))
            stack.enter_context(self.strategy.scope())
            yield

    @contextlib.contextmanager
    def policy_scope(self) -> Iterator[None]:
        """Build layers under the mixed policy; the global policy is restored afterwards (the
        layers keep theirs)."""
        if self.policy is None:
            yield
            return
        old = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)
        try:
            yield
        finally:
            keras.config.set_dtype_policy(old)


def resolve(execution: Execution, extra: dict[str, Any]) -> Setup:
    requested = extra.get("strategy")
    if requested not in STRATEGIES:
        raise BackendError(f"unknown strategy {requested!r}; the keras trainer knows mirrored and multi_worker")
    worker, workers = cluster_position()
    if requested is None and workers > 1:
        requested = "multi_worker"
    if requested == "multi_worker":
        # Before anything that starts TensorFlow's runtime (listing devices does): the strategy
        # configures its collective ops, which only works at start-up.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if execution.device == "gpu" and not gpus:
        raise BackendError(
            "device: gpu was requested but TensorFlow sees no GPU (no CUDA build, driver or device); "
            "use device: auto (GPU when present, else CPU) or cpu"
        )
    use_gpu = bool(gpus) and execution.device != "cpu"
    notes = []
    if execution.channels_last:
        notes.append("channels_last is a no-op for Keras: its models are NHWC already")
    if execution.mixed_precision != "none" and not use_gpu:
        notes.append(f"mixed precision {execution.mixed_precision} on a CPU runs, but slower than float32")
    policy = POLICIES[execution.mixed_precision]
    if requested == "multi_worker":
        return Setup(strategy, None, policy, execution.compile, True, worker, max(workers, 1), notes)
    # Logical devices: virtual GPUs, or several logical CPUs a test configured, count as replicas.
    devices = [d.name for d in tf.config.list_logical_devices("GPU" if use_gpu else "CPU")]
    if requested == "mirrored" or (requested is None and len(devices) > 1):
        strategy = tf.distribute.MirroredStrategy(devices)
        return Setup(strategy, None, policy, execution.compile, True, notes=notes)
    return Setup(tf.distribute.get_strategy(), devices[0], policy, execution.compile, False, notes=notes)


def cluster_position() -> tuple[int, int]:
    """(this task's rank, tasks) from ``TF_CONFIG``: the ``chief`` task first, then the workers;
    (0, 1) without a cluster."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    if not task or len(chiefs) + len(workers) <= 1:
        return 0, 1
    index = int(task.get("index", 0))
    rank = index if task.get("type") == "chief" else len(chiefs) + index
    return rank, len(chiefs) + len(workers)


def split(setup: Setup, *arrays: np.ndarray) -> tuple[Any, ...]:
    """Per-replica slices of one global batch (as even as possible), or the arrays themselves
    without a strategy. Every worker of a multi-worker run computes the same global batch; each
    replica takes the slice of its global replica id."""
    if not setup.distributed:
        return arrays
    replicas = setup.replicas
    result = []
    for array in arrays:
        chunks = np.array_split(array, replicas)
        result.append(
            setup.strategy.experimental_distribute_values_from_function(
                lambda ctx, chunks=chunks: tf.constant(chunks[ctx.replica_id_in_sync_group])
            )
        )
    return tuple(result)
