"""One side of a parity run: one backend building the spec and running tasks (eval outputs, a
train probe, the forwards of later steps, norm statistics), either recording every result in
the spill or comparing each one, as it is produced, with what the other side recorded.

A side runs in this process or, for large networks, in a child process of its own
(:mod:`.worker`): then the parent imports no framework, each framework's memory is returned to
the system when its side ends, and one side's framework never sits beside the other's."""

from __future__ import annotations

import gc
import importlib
import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import graph as g
from ..backends import BackendError, WeightAccess, get_backend
from ..weights import initial_weights
from . import rows as c
from .report import Difference, Tolerances
from .spill import Spill, SpilledWeights
from .stream import CollectingSink, activation_bytes, replay, segments

if TYPE_CHECKING:
    from ..pipeline import Architecture

Batches = list[tuple[np.ndarray, np.ndarray]]

# Gradient checkpointing starts where one forward's outputs would pass this (ResNet-50 at
# 224x224, batch 2, float64: 0.6 GB, not segmented; ResNet-152: 1.3 GB, segmented).
ACTIVATION_BUDGET = 1 << 30
SEGMENT_BYTES = 64 << 20  # about this much per recomputed segment
# Momentum buffers go to the spill between steps where the parameters pass this (ResNet-152 float64: 0.5 GB).
BUFFER_BUDGET = 256 << 20


@dataclass(frozen=True)
class Task:
    """``kind``: "eval" (eval-mode outputs of every node), "probe" (the train probe: outputs,
    statistics, gradients, weights after ``steps``), "later" (the train-mode forward of each
    step 2 .. ``steps``, each framework at its own weights after the steps before: only the
    outputs that kinks read) or "stats" (norm statistics after one forward: calibration)."""

    kind: str
    precision: str = "float64"
    prefix: str = ""
    checks: tuple[str, ...] = ()
    steps: int = 0
    learning_rate: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class Job:
    arch: Architecture
    backend: str
    weights: Mapping[str, Mapping[str, np.ndarray]]
    batches: Batches
    tasks: list[Task]
    spill: Spill
    compare: bool  # False: record results in the spill; True: compare with what is there
    tolerances: Tolerances = field(default_factory=Tolerances)
    low_memory: bool | None = None  # None: segment and spill buffers where the network is large
    reference_overflow: bool | None = None  # the recording side's eval overflowed (compare side only)
    draw_seed: int | None = None  # draw the seeded starting weights here and store them for the other side


@dataclass
class SideResult:
    rows: dict[str, dict[str, list[Difference]]] = field(default_factory=dict)  # check -> node -> rows
    overflow: bool = False  # some eval output is not finite
    kink_flips: dict[str, int] = field(default_factory=dict)
    later_kink_flips: dict[int, dict[str, int]] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)  # task prefix -> losses
    stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)  # per task: backend, task, precision, wall_s, cpu_s


def weight_backend(name: str) -> Any:
    backend = get_backend(name)
    if not isinstance(backend, WeightAccess):
        raise BackendError(f"backend '{name}' cannot exchange weights (it lacks get_weights/set_weights/train_probe)")
    return backend


def run_side(job: Job) -> SideResult:
    started, cpu = time.perf_counter(), time.process_time()
    backend = weight_backend(job.backend)
    result = SideResult()
    framework = getattr(backend, "framework_module", None)
    if framework:  # timed on its own: TensorFlow's import alone takes seconds
        importlib.import_module(framework)
        now, now_cpu = time.perf_counter(), time.process_time()
        result.timings.append({"backend": job.backend, "task": "import", "precision": "",
                               "wall_s": round(now - started, 3), "cpu_s": round(now_cpu - cpu, 3)})  # fmt: skip
        started, cpu = now, now_cpu
    if job.draw_seed is not None:
        SpilledWeights.store(job.spill, job.weights.prefix, initial_weights(job.arch, job.draw_seed))  # type: ignore[attr-defined]
        gc.collect()
    models = _Models(backend, job)
    for task in job.tasks:
        if task.kind == "eval":
            _eval(models.get(task.precision), backend, job, task, result)
            if job.compare and result.overflow and job.reference_overflow:
                break  # both overflow: the run starts again from calibrated statistics
        elif task.kind == "probe":
            _probe(models.take(task.precision), backend, job, task, result)
        elif task.kind == "later":
            _later(backend, job, task, result)
        elif task.kind == "stats":
            result.stats = _stats(backend, job, task)
        else:  # pragma: no cover - the engine makes only these
            raise ValueError(f"unknown task {task.kind!r}")
        if task.kind != "eval":
            gc.collect()  # the task's model (Keras' hold reference cycles) goes before the next is built
        now, now_cpu = time.perf_counter(), time.process_time()
        result.timings.append({"backend": job.backend, "task": task.kind, "precision": task.precision,
                               "wall_s": round(now - started, 3), "cpu_s": round(now_cpu - cpu, 3)})  # fmt: skip
        started, cpu = now, now_cpu
    return result


def build_options(precision: str) -> dict[str, Any]:
    if precision not in ("float32", "float64"):
        raise BackendError(f"precision must be float32 or float64, got {precision!r}")
    return {} if precision == "float32" else {"dtype": precision}


def _model(backend: Any, job: Job, precision: str) -> Any:
    model = backend.build(job.arch, **build_options(precision))
    backend.set_weights(model, job.arch, job.weights)
    return model


class _Models:
    """One model at the starting weights, built once for the eval task and the probe after it
    (eval leaves a model as it was; the probe changes it, so it is not kept after that)."""

    def __init__(self, backend: Any, job: Job) -> None:
        self.backend, self.job = backend, job
        self.kept: tuple[str, Any] | None = None

    def get(self, precision: str) -> Any:
        if self.kept is None or self.kept[0] != precision:
            if self.kept is not None:
                self.kept = None
                gc.collect()
            self.kept = (precision, _model(self.backend, self.job, precision))
        return self.kept[1]

    def take(self, precision: str) -> Any:
        model = self.get(precision)
        self.kept = None
        return model


# ---------------------------------------------------------------------------- eval


def _eval(model: Any, backend: Any, job: Job, task: Task, result: SideResult) -> None:
    stream = getattr(backend, "iter_node_outputs", None)
    images = job.batches[0][0]
    outputs = stream(model, job.arch, images) if stream else backend.node_outputs(model, job.arch, images).items()
    rows: dict[str, list[Difference]] = {}
    # A backbone's feature outputs are nodes too; their rows say which output of the model they are.
    returned = {node: f"output {name}" for name, node in job.arch.graph.outputs.items()}
    for name, value in outputs:
        result.overflow |= not bool(np.isfinite(value).all())
        key = f"{task.prefix}/eval/{name}"
        if job.compare:
            row = c.output_row("eval", name, job.spill.take(key), value, job.tolerances)
            rows[name] = [replace(row, tensor=returned[name]) if name in returned else row]
        else:
            job.spill.put(key, value)
    if job.compare:
        _missing(job, f"{task.prefix}/eval/", rows, lambda name: [c.output_row(
            "eval", name, None, np.zeros(0), job.tolerances)])  # fmt: skip
        result.rows["eval"] = rows


def _missing(job: Job, prefix: str, rows: dict[str, list[Difference]], make: Any) -> None:
    """Rows for what the recording side produced and this side did not (never silently dropped)."""
    for key in job.spill.keys(prefix):
        name = key[len(prefix) :]
        job.spill.discard(key)
        rows.setdefault(name, make(name))


# ---------------------------------------------------------------------------- probes


def _probe(model: Any, backend: Any, job: Job, task: Task, result: SideResult) -> None:
    outputs = None if "train_forward" in task.checks else (set().union(*c.kink_nodes(job.arch))
                                                           if "kinks" in task.checks else set())  # fmt: skip
    sink: _Recorder | _Comparer = (_Comparer(job, task.prefix, task.checks) if job.compare
                                   else _Recorder(job.spill, task.prefix, task.checks, outputs))  # fmt: skip
    losses = _run_probe(backend, model, job, task, job.batches, sink, steps=task.steps)
    result.losses[task.prefix] = losses
    if isinstance(sink, _Comparer):
        result.rows.update(sink.finish())
        result.kink_flips = sink.flips


def _later(backend: Any, job: Job, task: Task, result: SideResult) -> None:
    """The train-mode forward of step k + 1 for k = 1 .. steps - 1: a fresh k-step probe (the
    momentum buffers are not handed out, so probes cannot be chained), then a 0-step probe on
    the same model, now at its weights after k steps."""
    relus, pooled = c.kink_nodes(job.arch)
    forward_only = Task("probe", task.precision)
    for done in range(1, task.steps):
        model = _model(backend, job, task.precision)
        _run_probe(backend, model, job, task, job.batches, _Discard(), steps=done)
        batch = [job.batches[done % len(job.batches)]]
        prefix = f"{task.prefix}/{done + 1}"
        sink: _Recorder | _Comparer = (_Comparer(job, prefix, ("kinks",)) if job.compare
                                       else _Recorder(job.spill, prefix, ("kinks",), relus | pooled))  # fmt: skip
        _run_probe(backend, model, job, forward_only, batch, sink, steps=0)
        if isinstance(sink, _Comparer) and sink.flips:
            result.later_kink_flips[done + 1] = sink.flips
        del model
        gc.collect()


def _stats(backend: Any, job: Job, task: Task) -> dict[str, dict[str, np.ndarray]]:
    model = _model(backend, job, task.precision)
    sink = CollectingSink()
    _run_probe(backend, model, job, task, job.batches[:1], sink, steps=0)
    return sink.result.stats_after_forward


def _run_probe(
    backend: Any, model: Any, job: Job, task: Task, batches: Batches, sink: Any, *, steps: int
) -> list[float]:
    kwargs = {"steps": steps, "learning_rate": task.learning_rate, "momentum": task.momentum,
              "weight_decay": task.weight_decay}  # fmt: skip
    if "sink" not in inspect.signature(backend.train_probe).parameters and not _takes_kwargs(backend.train_probe):
        probe = backend.train_probe(model, job.arch, batches, **kwargs)  # a backend that cannot stream
        replay(probe, sink, job.arch)
        return list(probe.losses)
    kwargs |= {"sink": sink} | plan(job, task.precision, len(batches[0][0]), steps)
    return list(backend.train_probe(model, job.arch, batches, **kwargs).losses)


def _takes_kwargs(function: Any) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(function).parameters.values())


def plan(job: Job, precision: str, batch_size: int, steps: int) -> dict[str, Any]:
    """Segments (gradient checkpointing) and a spill for momentum buffers, where they are
    needed (``job.low_memory``: None decides by size, True always, False never)."""
    itemsize = 8 if precision == "float64" else 4
    arch = job.arch
    large = activation_bytes(arch, batch_size, itemsize) > ACTIVATION_BUDGET
    segmented = large if job.low_memory is None else job.low_memory
    out: dict[str, Any] = {}
    if segmented:
        out["segments"] = segments(arch, batch_size, itemsize, SEGMENT_BYTES)
    params = (arch.params_trainable + arch.params_non_trainable) * itemsize
    spill_buffers = params > BUFFER_BUDGET if job.low_memory is None else job.low_memory
    if spill_buffers and steps >= 2 and job.spill.on_disk:
        out["spill"] = job.spill
    return out


class _Discard:
    def output(self, node: str, value: np.ndarray) -> None: ...
    def stats(self, node: str, tensors: Mapping[str, np.ndarray]) -> None: ...
    def gradients(self, node: str, tensors: Mapping[str, np.ndarray]) -> None: ...
    def weights_after(self, node: str, tensors: Mapping[str, np.ndarray]) -> None: ...


class _Recorder:
    """Puts each result the compare side will need in the spill (``outputs``: which outputs;
    None for all)."""

    def __init__(self, spill: Spill, prefix: str, checks: tuple[str, ...], outputs: set[str] | None) -> None:
        self.spill, self.prefix, self.checks, self.outputs = spill, prefix, set(checks), outputs

    def output(self, node: str, value: np.ndarray) -> None:
        if self.outputs is None or node in self.outputs:
            self.spill.put(f"{self.prefix}/train/{node}", value)

    def stats(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        if "norm_stats" in self.checks:
            self.spill.put_tensors(f"{self.prefix}/norm_stats/{node}", tensors)

    def gradients(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        if "gradients" in self.checks:
            self.spill.put_tensors(f"{self.prefix}/gradients/{node}", tensors)

    def weights_after(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        if "weights_after" in self.checks:
            self.spill.put_tensors(f"{self.prefix}/weights_after/{node}", tensors)


class _Comparer:
    """Compares each result with the recorded one as it arrives, then forgets both. Counts kink
    flips in the forward (both forwards' ReLU outputs and max-pool inputs)."""

    def __init__(self, job: Job, prefix: str, checks: tuple[str, ...]) -> None:
        self.job, self.prefix, self.checks = job, prefix, set(checks)
        self.graph = job.arch.graph
        self.relus, self.pooled = c.kink_nodes(job.arch)
        self.pool_readers = {n.name: n.inputs[0] for n in self.graph if isinstance(n, g.MaxPool)}
        self.held: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # max-pool inputs until their pool runs
        self.rows: dict[str, dict[str, list[Difference]]] = {check: {} for check in checks if check != "kinks"}
        self.flips: dict[str, int] = {}

    def output(self, node: str, value: np.ndarray) -> None:
        ref = self.job.spill.take(f"{self.prefix}/train/{node}")
        if "train_forward" in self.checks:
            self.rows["train_forward"][node] = [c.output_row("train_forward", node, ref, value, self.job.tolerances)]
        if ref is None:
            return
        if node in self.pooled:
            self.held[node] = (ref, value)
        if node in self.relus or node in self.pool_readers:
            pooled = self.held.get(self.pool_readers.get(node, ""), (None, None))
            count = self.count_flips(node, ref, value, *pooled)
            if count:
                self.flips[node] = count

    def count_flips(self, node: str, a: np.ndarray, b: np.ndarray, pooled_a: np.ndarray | None,
                    pooled_b: np.ndarray | None) -> int:  # fmt: skip
        return c.node_kink_flips(self.graph[node], a, b, pooled_a, pooled_b)

    def _tensors(self, check: str, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        if check in self.checks:
            ref = self.job.spill.take_tensors(f"{self.prefix}/{check}/{node}")
            self.rows[check][node] = c.tensor_rows(check, node, ref, tensors, self.job.tolerances)

    def stats(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        self._tensors("norm_stats", node, tensors)

    def gradients(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        self._tensors("gradients", node, tensors)

    def weights_after(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        self._tensors("weights_after", node, tensors)

    def finish(self) -> dict[str, dict[str, list[Difference]]]:
        self.held.clear()
        for check, rows in self.rows.items():
            outputs = check == "train_forward"
            limit = getattr(self.job.tolerances, "outputs_rel" if outputs else c.TENSOR_LIMITS[check])
            _missing(self.job, f"{self.prefix}/{'train' if outputs else check}/", rows,
                     lambda name, check=check, limit=limit, outputs=outputs: [Difference(
                         check, name, "output" if outputs else "(every tensor)", *c.MISSING, limit, "rel")])  # fmt: skip
        return self.rows
