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

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .backends import BackendError, ProbeResult, WeightAccess, get_backend
from .pipeline import Architecture
from .weights import Weights, initial_weights


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

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.differences)

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
                check: {"ok": all(d.ok for d in self.differences if d.check == check), "worst": asdict(self.worst(check))}
                for check in self.checks()
            },
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
    """Both models are built in ``precision``. The default, float64, separates mapping errors
    (which show up at 1e-3 to 1e0) from float32 rounding: PyTorch's float32 CPU backward is
    ~1e-3 away from the exact gradient on a ResNet-20 (Keras' ~2e-6), which alone breaks a 1e-4
    gradient tolerance. ``"float32"`` checks the production precision (docs/parity.md)."""
    first, second = (_weight_backend(name) for name in backends)
    build = {} if precision == "float32" else {"dtype": precision}
    start = initial_weights(arch, seed)
    batches = _batches(arch, seed, batch_size, count=max(1, steps))
    report = ParityReport(backends, seed, steps, precision)

    eval_a = _node_outputs(first, arch, start, batches[0][0], build)
    eval_b = _node_outputs(second, arch, start, batches[0][0], build)
    logits = "head.classifier"
    for name in _ordered(arch, eval_b):
        if name == logits:
            magnitude = max(1.0, float(np.max(np.abs(eval_b[name]))))
            abs_diff, _ = compare(eval_a[name], eval_b[name])
            row = Difference("eval", name, "output", abs_diff / magnitude, abs_diff / magnitude, tolerances.logits_abs, "abs")
            report.differences.append(row)
            continue
        abs_diff, rel_diff = compare(eval_a[name], eval_b[name])
        report.differences.append(Difference("eval", name, "output", abs_diff, rel_diff, tolerances.outputs_rel, "rel"))

    probe_kwargs = {"steps": steps, "learning_rate": learning_rate, "momentum": momentum, "weight_decay": weight_decay}
    probe_a = _probe(first, arch, start, batches, probe_kwargs, build)
    probe_b = _probe(second, arch, start, batches, probe_kwargs, build)
    _compare_outputs(report, "train_forward", arch, probe_a.train_outputs, probe_b.train_outputs, tolerances.outputs_rel)
    _compare_weights(report, "norm_stats", arch, probe_a.stats_after_forward, probe_b.stats_after_forward, tolerances.stats_rel)
    _compare_weights(report, "gradients", arch, probe_a.gradients, probe_b.gradients, tolerances.gradients_rel)
    _compare_weights(report, "weights_after", arch, probe_a.weights_after, probe_b.weights_after, tolerances.weights_rel)
    report.losses = {backends[0]: probe_a.losses, backends[1]: probe_b.losses}
    return report


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


def _compare_outputs(report: ParityReport, check: str, arch: Architecture, a: Mapping[str, np.ndarray],
                     b: Mapping[str, np.ndarray], limit: float) -> None:  # fmt: skip
    for name in _ordered(arch, b):
        abs_diff, rel_diff = compare(a[name], b[name]) if name in a else (float("inf"), float("inf"))
        report.differences.append(Difference(check, name, "output", abs_diff, rel_diff, limit, "rel"))


def _compare_weights(report: ParityReport, check: str, arch: Architecture, a: Weights, b: Weights, limit: float) -> None:
    for name in _ordered(arch, b):
        node_scale = max((float(np.max(np.abs(t))) for t in b[name].values() if t.size), default=0.0)
        for key in sorted(b[name]):
            found = a.get(name, {}).get(key)
            scale = node_scale if check != "norm_stats" else None  # statistics: each tensor on its own scale
            abs_diff, rel_diff = compare(found, b[name][key], scale) if found is not None else (float("inf"), float("inf"))
            report.differences.append(Difference(check, name, key, abs_diff, rel_diff, limit, "rel"))


def render_text(report: ParityReport, *, rows: int = 8) -> str:
    lines = [f"parity {report.backends[0]} vs {report.backends[1]} ({report.precision}, seed {report.seed}, {report.steps} SGD steps)"]
    lines.append(f"{'check':15s} {'worst node':38s} {'tensor':16s} {'max abs':>10s} {'max rel':>10s} {'limit':>8s}  result")
    for check in report.checks():
        worst = report.worst(check)
        verdict = "ok" if all(d.ok for d in report.differences if d.check == check) else "FAIL"
        lines.append(
            f"{check:15s} {worst.node:38s} {worst.tensor:16s} {worst.max_abs:10.2e} {worst.max_rel:10.2e} "
            f"{worst.limit:8.0e}  {verdict} ({worst.measure})"
        )
    first = report.first_divergence()
    if first is None:
        lines.append("result: the two models are the same function (within tolerance)")
    else:
        lines.append(f"first diverging layer: {first.node} ({first.check}, {first.tensor}: "
                     f"max abs {first.max_abs:.3g}, max rel {first.max_rel:.3g}, limit {first.limit:g})")  # fmt: skip
        bad = [d for d in report.differences if not d.ok][:rows]
        lines += [f"  {d.check:15s} {d.node:38s} {d.tensor:16s} abs {d.max_abs:.3g} rel {d.max_rel:.3g}" for d in bad]
    return "\n".join(lines)
