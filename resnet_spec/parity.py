"""Cross-framework parity: build one spec in two backends, give both the same weights, feed the
same batches, and compare layer by layer.

Four checks, each per graph node and in graph order, so the first diverging layer is named:

* ``eval``: eval-mode output of every node;
* ``train_forward``: one train-mode forward (norms on batch statistics) and the norm statistics
  it leaves behind (``norm_stats``);
* ``gradients``: d loss / d weight at the shared starting weights;
* ``weights_after``: weights after K steps of SGD with momentum and weight decay.

The probe's exact meaning is in :class:`resnet_spec.backends.WeightAccess`. Frameworks are
reached only through the backend registry; nothing here imports one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import graph as g
from .backends import BackendError, ProbeResult, WeightAccess, get_backend
from .pipeline import Architecture
from .weights import Weights, initial_weights

LOGITS = "head.classifier"


@dataclass(frozen=True)
class Tolerances:
    """Tolerances (docs/parity.md). Logits: absolute, scaled up only when the logits themselves
    exceed 1 in magnitude (|diff| <= logits_abs * max(1, max |logits|)). Other outputs: relative
    to the largest magnitude of the reference tensor. Weights and gradients: relative to the
    largest magnitude among the node's tensors, so that a conv bias feeding a batch norm (whose
    exact gradient is zero) is judged on the scale of its kernel, not on rounding noise."""

    logits_abs: float = 1e-5
    outputs_rel: float = 1e-4
    stats_rel: float = 1e-4
    gradients_rel: float = 1e-4
    weights_rel: float = 1e-4


@dataclass(frozen=True)
class Difference:
    check: str
    node: str
    tensor: str
    max_abs: float
    max_rel: float
    limit: float
    measure: str  # "abs" or "rel"

    @property
    def ok(self) -> bool:
        value = self.max_abs if self.measure == "abs" else self.max_rel
        return bool(np.isfinite(value)) and value <= self.limit

    @property
    def value(self) -> float:
        return self.max_abs if self.measure == "abs" else self.max_rel


@dataclass
class ParityReport:
    backends: tuple[str, str]
    seed: int
    steps: int
    precision: str = "float64"
    differences: list[Difference] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    kink_flips: dict[str, int] = field(default_factory=dict)  # elements on different sides of a kink
    later_kink_flips: dict[int, dict[str, int]] = field(default_factory=dict)  # step (1-based, >= 2) -> flips
    decided_in: dict[str, str] = field(default_factory=dict)  # check -> precision, where not `precision`
    float32_worst: dict[str, Difference] = field(default_factory=dict)  # before a check was decided in float64
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.differences)

    def check_ok(self, check: str) -> bool:
        return all(d.ok for d in self.differences if d.check == check)

    def checks(self) -> list[str]:
        return list(dict.fromkeys(d.check for d in self.differences))

    def worst(self, check: str) -> Difference:
        """The row closest to (or furthest beyond) its limit."""
        rows = [d for d in self.differences if d.check == check]
        return max(rows, key=lambda d: d.value / d.limit if np.isfinite(d.value) else float("inf"))

    def first_divergence(self, check: str | None = None) -> Difference | None:
        return next((d for d in self.differences if not d.ok and (check is None or d.check == check)), None)

    def to_json(self) -> dict[str, Any]:
        first = self.first_divergence()
        return {
            "ok": self.ok,
            "backends": list(self.backends),
            "seed": self.seed,
            "steps": self.steps,
            "precision": self.precision,
            "first_divergence": asdict(first) if first else None,
            "checks": {
                check: {
                    "ok": self.check_ok(check),
                    "precision": self.decided_in.get(check, self.precision),
                    "worst": asdict(self.worst(check)),
                }
                | ({"float32_worst": asdict(self.float32_worst[check])} if check in self.float32_worst else {})
                for check in self.checks()
            },
            "kink_flips": self.kink_flips,
            "later_kink_flips": {str(step): flips for step, flips in self.later_kink_flips.items()},
            "notes": self.notes,
            "losses": self.losses,
            "differences": [asdict(d) | {"ok": d.ok} for d in self.differences],
        }


def compare(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / scale) with scale = max |b| unless given; infinite when the
    shapes differ or a value is not finite."""
    if a.shape != b.shape:
        return float("inf"), float("inf")
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
    if scale is None:
        scale = float(np.max(np.abs(b64))) if b64.size else 0.0
    return diff, diff / max(scale, 1e-12)


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
    tolerances: Tolerances = Tolerances(),
) -> ParityReport:
    """Both models are built in ``precision`` (docs/parity.md).

    float64, the default, decides every check. float32 cannot always decide the train-mode
    checks, for two reasons the report measures (:func:`float32_hazards`): a ReLU input within
    rounding of zero (or a max-pool window's near tie) lands on different sides of the kink in
    the two frameworks, and its gradient is then 0 in one and its full value in the other (in
    the first forward, or in a later step's forward, which moves only ``weights_after``); and a batch norm whose statistics come from a
    handful of values divides float32 rounding by a small standard deviation. Where such a
    hazard is present and a train-mode check fails in float32, that check is decided again in
    float64; the report keeps the float32 numbers and names the hazard. Eval is always decided
    in the precision asked for."""
    pair = (_weight_backend(backends[0]), _weight_backend(backends[1]))
    build = _build_options(precision)
    start = initial_weights(arch, seed)
    batches = _batches(arch, seed, batch_size, count=max(1, steps))
    report = ParityReport(backends, seed, steps, precision)

    eval_a, eval_b = (_node_outputs(backend, arch, start, batches[0][0], build) for backend in pair)
    if _overflows(eval_a) and _overflows(eval_b):
        start = _calibrated(pair[0], arch, start, batches[0])
        report.notes.append(CALIBRATED)
        eval_a, eval_b = (_node_outputs(backend, arch, start, batches[0][0], build) for backend in pair)
    _compare_eval(report, arch, eval_a, eval_b, tolerances)

    probe_kwargs = {"steps": steps, "learning_rate": learning_rate, "momentum": momentum, "weight_decay": weight_decay}
    probe_a, probe_b = (_probe(backend, arch, start, batches, probe_kwargs, build) for backend in pair)
    _compare_probes(report, arch, probe_a, probe_b, tolerances, PROBE_CHECKS)
    report.kink_flips = kink_flips(arch, probe_a.train_outputs, probe_b.train_outputs)
    report.losses = {backends[0]: probe_a.losses, backends[1]: probe_b.losses}
    failing = [check for check in PROBE_CHECKS if not report.check_ok(check)]
    if precision != "float64" and failing:
        excused = _hazarded(report, arch, pair, start, batches, probe_kwargs, batch_size, failing)
        if excused:
            _decide_in_float64(report, arch, pair, start, batches, probe_kwargs, tolerances, excused)
    return report


def _hazarded(report: ParityReport, arch: Architecture, pair: tuple[Any, Any], start: Weights, batches: list[Any],
              probe_kwargs: dict[str, Any], batch_size: int, failing: list[str]) -> list[str]:  # fmt: skip
    """The ``failing`` float32 checks that a hazard excuses (a note names it). A kink flip in the
    first forward or a small norm touches every train-mode check; a flip in a later step's
    forward only ``weights_after``. Later forwards are counted only when nothing in the first
    explains a failing ``weights_after``, since counting them costs a probe per step."""
    hazards, excused = float32_hazards(arch, batch_size, report.kink_flips), failing
    if not hazards and "weights_after" in failing:
        report.later_kink_flips = _later_kink_flips(arch, pair, start, batches, probe_kwargs)
        later = {f"{node} (forward of step {step})": count
                 for step, flips in report.later_kink_flips.items() for node, count in flips.items()}  # fmt: skip
        hazards, excused = float32_hazards(arch, batch_size, later), ["weights_after"]
    if not hazards:
        return []
    report.notes.append(f"float32 hazards: {'; '.join(hazards)}. So {', '.join(excused)} were decided in float64")
    return excused


def _later_kink_flips(arch: Architecture, pair: tuple[Any, Any], start: Weights, batches: list[Any],
                      probe_kwargs: dict[str, Any]) -> dict[int, dict[str, int]]:  # fmt: skip
    """Kink flips in the forward of steps 2 .. K (1-based), each framework at its own weights
    after the steps before. Step k's weights come from a fresh k-1 step probe (the momentum
    buffers are not handed out, so probes cannot be chained); its forward is a 0-step probe.
    Every probe here is float32 (the default build): only float32 runs look for hazards."""
    found: dict[int, dict[str, int]] = {}
    forward_only = {"steps": 0, "learning_rate": 0.0, "momentum": 0.0, "weight_decay": 0.0}
    for done in range(1, probe_kwargs["steps"]):
        batch = [batches[done % len(batches)]]
        outputs = []
        for backend in pair:
            weights = _probe(backend, arch, start, batches, probe_kwargs | {"steps": done}, {}).weights_after
            outputs.append(_probe(backend, arch, weights, batch, forward_only, {}).train_outputs)
        flips = kink_flips(arch, *outputs)
        if flips:
            found[done + 1] = flips
    return found


PROBE_CHECKS = ("train_forward", "norm_stats", "gradients", "weights_after")
SMALL_NORM_GROUP = 64  # batch statistics over fewer values than this: float32 cannot decide 1e-4


def float32_hazards(arch: Architecture, batch_size: int, flips: Mapping[str, int]) -> list[str]:
    """Why float32 train-mode results of one function may differ beyond 1e-4 between frameworks
    (empty when there is no reason)."""
    hazards = []
    if flips:
        hazards.append(
            f"{sum(flips.values())} element(s) on different sides of a ReLU or max-pool kink in the two float32 "
            f"train-mode forwards (first at {next(iter(flips))}; the gradient jumps there)"
        )
    small = [(n.name, _norm_group(arch, n, batch_size)) for n in arch.graph if isinstance(n, g.BatchNorm)]
    small = [(name, size) for name, size in small if size < SMALL_NORM_GROUP]
    if small:
        least = min(size for _, size in small)
        hazards.append(
            f"{len(small)} batch norm(s) take batch statistics over fewer than {SMALL_NORM_GROUP} values "
            f"per channel (as few as {least}, first at {small[0][0]}; rounding is divided by their small deviation)"
        )
    return hazards


def _norm_group(arch: Architecture, node: g.BatchNorm, batch_size: int) -> int:
    """How many values one channel's batch statistics average: N * H * W (N for vectors)."""
    shape = arch.shape_of(node.name)
    return batch_size * (shape[0] * shape[1] if len(shape) == 3 else 1)


CALIBRATED = (
    "eval-mode outputs overflow in both frameworks with the initial statistics (moving mean 0, variance 1: "
    "eval-mode batch norm then normalizes nothing and the residual sum grows through every block); "
    "every check used moving statistics set to the first batch's statistics instead"
)


def kink_flips(arch: Architecture, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Per node, how many elements sit on different sides of a kink in the two forwards
    ``a`` and ``b`` (node outputs): ReLU / ReLU6 outputs active in one and not in the other,
    and max-pool windows whose largest input is at a different place. Rounding chose the side,
    and the gradient of such an element is 0 in one framework and its full value in the other."""
    flips: dict[str, int] = {}
    for node in arch.graph:
        if node.name not in a or node.name not in b:
            continue
        if isinstance(node, g.Activation) and node.function in ("relu", "relu6"):
            x, y = a[node.name], b[node.name]
            count = int(np.count_nonzero((x > 0) != (y > 0)))
            if node.function == "relu6":
                count += int(np.count_nonzero((x < 6) != (y < 6)))
        elif isinstance(node, g.MaxPool) and node.inputs[0] in a and node.inputs[0] in b:
            count = int(
                np.count_nonzero(_window_argmax(node, a[node.inputs[0]]) != _window_argmax(node, b[node.inputs[0]]))
            )
        else:
            continue
        if count:
            flips[node.name] = count
    return flips


def _window_argmax(node: g.MaxPool, x: np.ndarray) -> np.ndarray:
    """Where in each pooling window of the NHWC map ``x`` its maximum is (padding is -inf)."""
    top, bottom, left, right = node.padding
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, node.pool_size, axis=(1, 2))
    windows = windows[:, :: node.strides[0], :: node.strides[1]]
    return np.argmax(windows.reshape(*windows.shape[:4], -1), axis=-1)


def _build_options(precision: str) -> dict[str, Any]:
    if precision not in ("float32", "float64"):
        raise BackendError(f"precision must be float32 or float64, got {precision!r}")
    return {} if precision == "float32" else {"dtype": precision}


def _overflows(outputs: Mapping[str, np.ndarray]) -> bool:
    return any(not np.isfinite(value).all() for value in outputs.values())


def _calibrated(backend: Any, arch: Architecture, weights: Weights, batch: tuple[np.ndarray, np.ndarray]) -> Weights:
    """``weights`` with every norm's moving statistics replaced by its batch statistics on
    ``batch`` (a float64 train-mode forward of a copy of the graph whose norms have decay 0),
    so that the eval-mode network is the train-mode one on that batch."""
    graph = g.Graph([replace(n, decay=0.0) if isinstance(n, g.BatchNorm) else n for n in arch.graph], arch.graph.output)
    instant = copy.copy(arch)
    instant.graph = graph
    probe = _probe(backend, instant, weights, [batch], {"steps": 0, "learning_rate": 0.0, "momentum": 0.0,
                                                        "weight_decay": 0.0}, {"dtype": "float64"})  # fmt: skip
    return {name: {**entry, **probe.stats_after_forward.get(name, {})} for name, entry in weights.items()}


def _decide_in_float64(report: ParityReport, arch: Architecture, pair: tuple[Any, Any], start: Weights,
                       batches: list[Any], probe_kwargs: dict[str, Any], tolerances: Tolerances,
                       checks: list[str]) -> None:  # fmt: skip
    """Replace the rows of ``checks`` by float64 ones; the float32 worst rows stay in the report."""
    for check in checks:
        report.float32_worst[check] = report.worst(check)
        report.decided_in[check] = "float64"
    report.differences = [d for d in report.differences if d.check not in checks]
    probe_a, probe_b = (_probe(backend, arch, start, batches, probe_kwargs, {"dtype": "float64"}) for backend in pair)
    _compare_probes(report, arch, probe_a, probe_b, tolerances, checks)


def _compare_probes(report: ParityReport, arch: Architecture, a: ProbeResult, b: ProbeResult,
                    tolerances: Tolerances, checks: Iterable[str]) -> None:  # fmt: skip
    if "train_forward" in checks:
        _compare_outputs(report, "train_forward", arch, a.train_outputs, b.train_outputs, tolerances.outputs_rel)
    if "norm_stats" in checks:
        _compare_weights(report, "norm_stats", arch, a.stats_after_forward, b.stats_after_forward, tolerances.stats_rel)
    if "gradients" in checks:
        _compare_weights(report, "gradients", arch, a.gradients, b.gradients, tolerances.gradients_rel)
    if "weights_after" in checks:
        _compare_weights(report, "weights_after", arch, a.weights_after, b.weights_after, tolerances.weights_rel)


def transfer(source: Any, source_backend: str, target: Any, target_backend: str, arch: Architecture) -> None:
    """Copy every weight (norm statistics included) from one native model to another, by graph
    node name, converting layouts through the neutral form."""
    weights = _weight_backend(source_backend).get_weights(source, arch)
    _weight_backend(target_backend).set_weights(target, arch, weights)


def _weight_backend(name: str) -> Any:
    backend = get_backend(name)
    if not isinstance(backend, WeightAccess):
        raise BackendError(f"backend '{name}' cannot exchange weights (it lacks get_weights/set_weights/train_probe)")
    return backend


def _batches(arch: Architecture, seed: int, batch_size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed + 1)
    h, w, c = arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels
    return [
        (rng.standard_normal((batch_size, h, w, c)).astype(np.float32), rng.integers(0, arch.spec.classes, batch_size))
        for _ in range(count)
    ]


def _node_outputs(backend: Any, arch: Architecture, weights: Weights, images: np.ndarray,
                  build: dict[str, Any]) -> dict[str, np.ndarray]:  # fmt: skip
    model = backend.build(arch, **build)
    backend.set_weights(model, arch, weights)
    return backend.node_outputs(model, arch, images)


def _probe(backend: Any, arch: Architecture, weights: Weights, batches: list[Any], kwargs: dict[str, Any],
           build: dict[str, Any]) -> ProbeResult:  # fmt: skip
    model = backend.build(arch, **build)
    backend.set_weights(model, arch, weights)
    return backend.train_probe(model, arch, batches, **kwargs)


def _ordered(arch: Architecture, present: Iterable[str]) -> list[str]:
    keys = set(present)
    return [node.name for node in arch.graph if node.name in keys]


def _compare_eval(report: ParityReport, arch: Architecture, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                  tolerances: Tolerances) -> None:  # fmt: skip
    """Logits absolutely (scaled only where they exceed 1 in magnitude), other nodes relatively."""
    for name in _ordered(arch, b):
        abs_diff, rel_diff = compare(a[name], b[name])
        if name == LOGITS:
            magnitude = max(1.0, float(np.max(np.abs(b[name])))) if np.isfinite(b[name]).all() else 1.0
            row = Difference(
                "eval", name, "output", abs_diff / magnitude, abs_diff / magnitude, tolerances.logits_abs, "abs"
            )
        else:
            row = Difference("eval", name, "output", abs_diff, rel_diff, tolerances.outputs_rel, "rel")
        report.differences.append(row)


def _compare_outputs(report: ParityReport, check: str, arch: Architecture, a: Mapping[str, np.ndarray],
                     b: Mapping[str, np.ndarray], limit: float) -> None:  # fmt: skip
    for name in _ordered(arch, b):
        abs_diff, rel_diff = compare(a[name], b[name]) if name in a else (float("inf"), float("inf"))
        report.differences.append(Difference(check, name, "output", abs_diff, rel_diff, limit, "rel"))


def _compare_weights(
    report: ParityReport, check: str, arch: Architecture, a: Weights, b: Weights, limit: float
) -> None:
    for name in _ordered(arch, b):
        node_scale = max((float(np.max(np.abs(t))) for t in b[name].values() if t.size), default=0.0)
        for key in sorted(b[name]):
            found = a.get(name, {}).get(key)
            scale = node_scale if check != "norm_stats" else None  # statistics: each tensor on its own scale
            abs_diff, rel_diff = (
                compare(found, b[name][key], scale) if found is not None else (float("inf"), float("inf"))
            )
            report.differences.append(Difference(check, name, key, abs_diff, rel_diff, limit, "rel"))


def render_text(report: ParityReport, *, rows: int = 8) -> str:
    lines = [
        f"parity {report.backends[0]} vs {report.backends[1]} ({report.precision}, seed {report.seed}, {report.steps} SGD steps)"
    ]
    lines.append(
        f"{'check':15s} {'worst node':38s} {'tensor':16s} {'max abs':>10s} {'max rel':>10s} {'limit':>8s}  result"
    )
    for check in report.checks():
        worst = report.worst(check)
        verdict = "ok" if report.check_ok(check) else "FAIL"
        where = f", {report.decided_in[check]}" if check in report.decided_in else ""
        lines.append(
            f"{check:15s} {worst.node:38s} {worst.tensor:16s} {worst.max_abs:10.2e} {worst.max_rel:10.2e} "
            f"{worst.limit:8.0e}  {verdict} ({worst.measure}{where})"
        )
        if check in report.float32_worst:
            before = report.float32_worst[check]
            lines.append(
                f"  {'(float32)':13s} {before.node:38s} {before.tensor:16s} {before.max_abs:10.2e} {before.max_rel:10.2e}"
            )
    lines += [f"note: {note}" for note in report.notes]
    first = report.first_divergence()
    if first is None:
        lines.append("result: the two models are the same function (within tolerance)")
    else:
        lines.append(f"first diverging layer: {first.node} ({first.check}, {first.tensor}: "
                     f"max abs {first.max_abs:.3g}, max rel {first.max_rel:.3g}, limit {first.limit:g})")  # fmt: skip
        bad = [d for d in report.differences if not d.ok][:rows]
        lines += [f"  {d.check:15s} {d.node:38s} {d.tensor:16s} abs {d.max_abs:.3g} rel {d.max_rel:.3g}" for d in bad]
    return "\n".join(lines)
