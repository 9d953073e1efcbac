"""The run: which side computes what, in which precision, and what the report concludes.

Each check's rows come from two sides (:mod:`.sides`): the first backend records its results in
a spill, the second compares its own with them node by node as it computes them. Float32
hazards and the float64 decisions they lead to (docs/parity.md, "Precision") are decided here;
frameworks are reached only through the sides, so this module imports none."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import graph as g
from .. import shapes
from ..backends import BackendError
from ..pipeline import Architecture
from ..weights import Weights, initial_weights
from ..weights import shapes as shapes_of
from . import rows as c
from .report import CHECKS, PROBE_CHECKS, ParityReport, Tolerances
from .sides import Job, SideResult, Task, run_side, weight_backend
from .spill import Spill, SpilledWeights
from .stream import activation_bytes

CALIBRATED = (
    "eval-mode outputs overflow in both frameworks with the initial statistics (moving mean 0, variance 1: "
    "eval-mode batch norm then normalizes nothing and the residual sum grows through every block); "
    "every check used moving statistics set to the first batch's statistics instead"
)
BACKBONE = (
    "a backbone (head.features) has no classifier: the train-mode checks use the loss sum over its feature "
    "outputs of mean(f ** 2) (labels unused); every feature output is marked 'output NAME'"
)
BACKBONE_LEAN = (
    "a backbone (head.features) in a lean run: only the eval check ran (every node, each feature output among "
    "them, marked 'output NAME'); the train-mode checks (train_forward, norm_stats, gradients, weights_after) "
    "did not run and no SGD step was taken, since the lean run's segmented backward does not carry a backbone's "
    "loss (the sum of mean(f ** 2) over its feature outputs); a smaller --batch-size or a reduced copy of the "
    "spec (--set) runs them, as does the classifier spec with the same stem and stages"
)
NO_SEGMENTS = "a lean run's segmented backward does not carry a backbone's loss (see the note)"
# A run is lean (docs/parity.md, "Memory and time") where the fast way would pass this.
MEMORY_BUDGET = 4 << 30
FRAMEWORKS_BYTES = 1 << 30  # TensorFlow and PyTorch imported, nothing built (measured: 0.96 GB)


# A fixed mmap threshold: glibc otherwise raises it after the first large free, and the
# framework's freed transients (a model's converted weights, 0.5 GB for a float64 ResNet-152)
# then stay in the heap, counted in the side's memory, instead of going back to the system.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}


DEFAULT_TOLERANCES = Tolerances()


class SettingsError(ValueError):
    """Parity settings that cannot give a meaningful result (a usage error: exit status 2)."""


def run(
    arch: Architecture,
    *,
    backends: tuple[str, str] = ("keras", "torch"),
    seed: int = 0,
    steps: int = 2,
    batch_size: int = 2,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    precision: str = "float64",
    tolerances: Tolerances = DEFAULT_TOLERANCES,
    allow_vacuous: bool = False,
    isolate: bool | None = None,
    low_memory: bool | None = None,
    start: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]] | None = None,
) -> ParityReport:
    """Both models are built in ``precision`` (docs/parity.md).

    float64, the default, decides every check. float32 cannot always decide the train-mode
    checks, for two reasons the report measures (:func:`float32_hazards`): a ReLU input within
    rounding of zero (or a max-pool window's near tie) lands on different sides of the kink in
    the two frameworks, and its gradient is then 0 in one and its full value in the other (in
    the first forward, or in a later step's forward, which moves only ``weights_after``); and
    a batch norm whose statistics come from a handful of values divides float32 rounding by a
    small standard deviation. Where such a hazard is present and a train-mode check fails in
    float32, that check is decided again in float64; the report keeps the float32 numbers and
    names the hazard. Eval is always decided in the precision asked for.

    ``start``: each backend's own starting weights (comparing two existing models) instead of
    the seeded ones. ``isolate``: run each backend in a child process (None: where the network
    is large). ``low_memory``: gradient checkpointing and momentum buffers on disk (None: where
    the network is large). ``allow_vacuous``: a check that compared nothing does not fail."""
    _check_settings(arch, backends, steps, batch_size, precision)
    for name in backends:
        weight_backend(name)  # a usage error (unknown backend, framework missing) before any work
    lean = _lean(arch, batch_size) if low_memory is None else low_memory
    isolate = lean if isolate is None else isolate
    # A backbone's probe loss (no classifier) is the sum of mean(f ** 2) over its feature outputs,
    # read across the whole graph: the segmented backward of a lean run does not carry it, so a
    # lean backbone runs the eval check alone and the report says so.
    backbone = bool(arch.graph.outputs)
    eval_only = backbone and lean
    report = ParityReport(backends, seed, steps, precision, allow_vacuous=allow_vacuous, batch_size=batch_size,
                          checks_run=["eval"] if eval_only else list(CHECKS), input_node=arch.graph.input.name)  # fmt: skip
    if backbone:
        report.notes.append(BACKBONE_LEAN if eval_only else BACKBONE)
    if eval_only:
        report.skipped = {check: NO_SEGMENTS for check in PROBE_CHECKS}
        report.steps = 0  # none were taken; the number asked for is settings.steps_asked
    report.settings = {"learning_rate": learning_rate, "momentum": momentum, "weight_decay": weight_decay,
                       "tolerances": asdict(tolerances),
                       "memory": {"mode": "lean" if lean else "fast", "child_processes": isolate}}  # fmt: skip
    if eval_only:
        report.settings["steps_asked"] = steps
    with Spill(on_disk=lean or isolate) as spill:
        run = _Run(arch, backends, spill, tolerances, isolate, low_memory if lean else False,
                   _batches(arch, seed, batch_size, max(1, steps)))  # fmt: skip
        run.weights = run.starting_weights(seed, start)
        probe = Task("probe", precision, "p", (*PROBE_CHECKS, "kinks"), steps, learning_rate, momentum, weight_decay)
        tasks = [Task("eval", precision, "e")] + ([] if eval_only else [probe])
        a, b = run.both(tasks)
        if a.overflow and b.overflow and not eval_only:
            run.weights = run.calibrated()
            report.notes.append(CALIBRATED)
            report.calibrated = True
            a, b = run.both([Task("eval", precision, "e"), probe])
        report.differences = _ordered(arch, b.rows, CHECKS)
        report.kink_flips = b.kink_flips
        report.losses = {backends[0]: a.losses.get("p", []), backends[1]: b.losses.get("p", [])}
        failing = [check for check in PROBE_CHECKS if not all(d.ok for d in report.rows(check))]
        if precision != "float64" and failing:
            excused = _hazarded(report, run, probe, failing)
            if excused:
                _decide_in_float64(report, run, probe, excused)
        report.timings = run.timings
    return report


def _check_settings(arch: Architecture, backends: tuple[str, str], steps: int, batch_size: int, precision: str) -> None:
    if precision not in ("float32", "float64"):
        raise SettingsError(f"precision must be float32 or float64, got {precision!r}")
    if len(backends) != 2:
        raise SettingsError(f"parity compares two backends, got {len(backends)}: {', '.join(backends)}")
    if steps < 0:
        raise SettingsError(f"steps must be >= 0, got {steps}")
    if batch_size < 1:
        raise SettingsError(f"the batch size must be at least 1, got {batch_size}")
    single = [n.name for n in arch.graph if isinstance(n, g.BatchNorm) and c.norm_group(arch, n, batch_size) < 2]
    if single:
        raise SettingsError(
            f"with batch size {batch_size}, batch norm {single[0]} takes its batch statistics over a single value "
            f"(variance 0: the train-mode checks would compare nothing meaningful); use a batch size of 2 or more"
        )


def _lean(arch: Architecture, batch_size: int) -> bool:
    """Whether to run lean (each side in a child process, the spill on disk, gradient
    checkpointing and momentum buffers on disk where a network is large) rather than fast (one
    process, the spill in memory): lean when the fast run's estimated peak passes MEMORY_BUDGET.
    Fast holds both frameworks (about 1 GiB), the first side's records (eval and train-mode
    outputs, gradients, weights) and the second side's model, gradients, momentum and one
    forward's outputs, all in float64 (a float32 run may decide checks in float64)."""
    params = (arch.params_trainable + arch.params_non_trainable) * 8
    outputs = activation_bytes(arch, batch_size, 8)
    return FRAMEWORKS_BYTES + (2 * outputs + 2 * params) + (3 * params + outputs) > MEMORY_BUDGET


def _batches(arch: Architecture, seed: int, batch_size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed + 1)
    h, w, ch = arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels
    return [
        (rng.standard_normal((batch_size, h, w, ch)).astype(np.float32), rng.integers(0, arch.spec.classes or 1, batch_size))
        for _ in range(count)
    ]


class _Run:
    """The state both sides share: the spill, the starting weights, where sides run."""

    def __init__(self, arch: Architecture, backends: tuple[str, str], spill: Spill, tolerances: Tolerances,
                 isolate: bool, low_memory: bool | None, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:  # fmt: skip
        self.arch, self.backends, self.spill, self.tolerances = arch, backends, spill, tolerances
        self.isolate, self.low_memory, self.batches = isolate, low_memory, batches
        self.weights: dict[str, Mapping[str, Mapping[str, np.ndarray]]] = {}
        self.timings: list[dict[str, Any]] = []
        self.seed: int | None = None  # set while the first side has still to draw the starting weights

    def starting_weights(self, seed: int, start: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]] | None
                         ) -> dict[str, Mapping[str, Mapping[str, np.ndarray]]]:  # fmt: skip
        if start is not None:
            return {name: self._kept(f"start.{i}", start[name]) for i, name in enumerate(self.backends)}
        if self.isolate and self.spill.on_disk:  # drawn by the first side's process: never held here
            self.seed = seed
            shared: Mapping[str, Mapping[str, np.ndarray]] = SpilledWeights(
                self.spill, "start", list(shapes_of(self.arch))
            )
        else:
            shared = self._kept("start", initial_weights(self.arch, seed))
        return {name: shared for name in self.backends}

    def _kept(
        self, prefix: str, weights: Mapping[str, Mapping[str, np.ndarray]]
    ) -> Mapping[str, Mapping[str, np.ndarray]]:
        return SpilledWeights.store(self.spill, prefix, weights) if self.spill.on_disk else weights

    def side(self, index: int, tasks: list[Task], *, arch: Architecture | None = None,
             reference_overflow: bool | None = None) -> SideResult:  # fmt: skip
        name = self.backends[index]
        job = Job(arch or self.arch, name, self.weights[name], self.batches, tasks, self.spill, compare=index == 1,
                  tolerances=self.tolerances, low_memory=self.low_memory, reference_overflow=reference_overflow,
                  draw_seed=self.seed if index == 0 else None)  # fmt: skip
        self.seed = None if index == 0 else self.seed
        started = time.perf_counter()
        result = _in_child(job) if self.isolate else run_side(job)
        self.timings += result.timings
        if self.isolate:  # the child's start (interpreter, imports) is part of the cost
            self.timings.append({"backend": name, "task": "process", "precision": "", "cpu_s": None,
                                 "wall_s": round(time.perf_counter() - started - sum(t["wall_s"] for t in result.timings), 3)})  # fmt: skip
        return result

    def both(self, tasks: list[Task]) -> tuple[SideResult, SideResult]:
        a = self.side(0, tasks)
        return a, self.side(1, tasks, reference_overflow=a.overflow)

    def calibrated(self) -> dict[str, Mapping[str, Mapping[str, np.ndarray]]]:
        """Every norm's moving statistics replaced by its batch statistics on the first batch (a
        float64 train-mode forward of the first backend, on a copy of the graph whose norms
        have decay 0), so that the eval-mode network is the train-mode one on that batch."""
        graph = g.Graph([replace(n, decay=0.0) if isinstance(n, g.BatchNorm) else n for n in self.arch.graph],
                        self.arch.graph.output, dict(self.arch.graph.outputs))  # fmt: skip
        instant = replace(self.arch, graph=graph, analysis=shapes.analyze(graph))  # a new Architecture: its own hash
        stats = self.side(0, [Task("stats", "float64")], arch=instant).stats
        out: dict[str, Mapping[str, Mapping[str, np.ndarray]]] = {}
        for name, weights in self.weights.items():
            if isinstance(weights, SpilledWeights):
                out[name] = weights.with_overrides(stats)
            else:
                out[name] = {node: {**entry, **stats.get(node, {})} for node, entry in weights.items()}
        return out


def _ordered(arch: Architecture, rows: Mapping[str, Mapping[str, list[Any]]], checks: tuple[str, ...]) -> list[Any]:
    """Rows check by check (CHECKS order), each in graph order."""
    order = [node.name for node in arch.graph]
    out = []
    for check in checks:
        by_node = rows.get(check, {})
        out += [row for name in order for row in by_node.get(name, [])]
        out += [row for name, found in by_node.items() if name not in set(order) for row in found]
    return out


def _hazarded(report: ParityReport, run: _Run, probe: Task, failing: list[str]) -> list[str]:
    """The ``failing`` float32 checks that a hazard excuses (a note names it). A kink flip in the
    first forward or a small norm touches every train-mode check; a flip in a later step's
    forward only ``weights_after``. Later forwards are counted only when nothing in the first
    explains a failing ``weights_after``, since counting them costs a probe per step."""
    found, excused = c.hazards(run.arch, report.batch_size, report.kink_flips), failing
    if not found and "weights_after" in failing:
        task = replace(probe, kind="later", prefix="l", checks=("kinks",))
        a = run.side(0, [task])
        report.later_kink_flips = run.side(1, [task], reference_overflow=a.overflow).later_kink_flips
        merged: dict[str, int] = {}
        for flips in report.later_kink_flips.values():
            for node, count in flips.items():
                merged[node] = merged.get(node, 0) + count
        first_step = next(iter(report.later_kink_flips), None)
        found = [h for h in c.hazards(run.arch, report.batch_size, merged, step=first_step) if h.kind == "kink_flips"]
        excused = ["weights_after"]
    if not found:
        return []
    report.hazards = found
    report.notes.append(
        f"float32 hazards: {'; '.join(h.text for h in found)}. So {', '.join(excused)} were decided in float64"
    )
    return excused


def _decide_in_float64(report: ParityReport, run: _Run, probe: Task, checks: list[str]) -> None:
    """Replace the rows of ``checks`` by float64 ones; the float32 worst rows stay in the report."""
    for check in checks:
        worst = report.worst(check)
        if worst is not None:
            report.float32_worst[check] = worst
        report.decided_in[check] = "float64"
    task = replace(probe, precision="float64", prefix="d", checks=tuple(checks))
    a = run.side(0, [task])
    b = run.side(1, [task], reference_overflow=a.overflow)
    decided = _ordered(run.arch, b.rows, tuple(checks))
    kept = [d for d in report.differences if d.check not in checks]
    report.differences = _ordered(run.arch, _by_check(kept + decided), CHECKS)


def _by_check(rows: list[Any]) -> dict[str, dict[str, list[Any]]]:
    out: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        out.setdefault(row.check, {}).setdefault(row.node, []).append(row)
    return out


# ---------------------------------------------------------------------------- child processes


def _in_child(job: Job) -> SideResult:
    """Run one side in a fresh interpreter (``python -m resnet_spec.parity.worker``): the arrays
    travel through the spill folder, the job and its result through two pickle files in it."""
    with tempfile.TemporaryDirectory(prefix="side-", dir=job.spill.root) as folder:
        job_file, result_file = Path(folder) / "job.pickle", Path(folder) / "result.pickle"
        job_file.write_bytes(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        env = {**_MALLOC, **os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.run([sys.executable, "-m", "resnet_spec.parity.worker", str(job_file), str(result_file)],
                              env=env, capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0 or not result_file.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise BackendError(f"the {job.backend} side stopped (exit status {proc.returncode}):\n{tail}")
        status, payload = pickle.loads(result_file.read_bytes())
    if status == "error":
        kind, message = payload
        raise (BackendError if kind == "BackendError" else RuntimeError)(message)
    return payload  # type: ignore[no-any-return]


def transfer(source: Any, source_backend: str, target: Any, target_backend: str, arch: Architecture) -> None:
    """Copy every weight (norm statistics included) from one native model to another, by graph
    node name, converting layouts through the neutral form."""
    weights: Weights = weight_backend(source_backend).get_weights(source, arch)
    weight_backend(target_backend).set_weights(target, arch, weights)
