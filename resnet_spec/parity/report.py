"""What a parity run found: one row per compared tensor, the checks they belong to, the float32
hazards, where each check was decided, and the text and JSON forms of all of it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

CHECKS = ("eval", "train_forward", "norm_stats", "gradients", "weights_after")
PROBE_CHECKS = CHECKS[1:]
JSON_FORMAT = "resnet-spec-parity/2"


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
    """One compared tensor. ``magnitude`` is the largest absolute value in either framework's
    tensor (0 for an all-zero or empty pair: such a row compares nothing)."""

    check: str
    node: str
    tensor: str
    max_abs: float
    max_rel: float
    limit: float
    measure: str  # "abs" or "rel"
    magnitude: float = math.nan

    @property
    def ok(self) -> bool:
        value = self.max_abs if self.measure == "abs" else self.max_rel
        return bool(math.isfinite(value)) and value <= self.limit

    @property
    def value(self) -> float:
        return self.max_abs if self.measure == "abs" else self.max_rel

    @property
    def ratio(self) -> float:
        """How close to (or far beyond) its limit: value / limit, infinite when not finite."""
        return self.value / self.limit if math.isfinite(self.value) else math.inf


@dataclass(frozen=True)
class Hazard:
    """A reason float32 results of one function may differ beyond 1e-4 between frameworks."""

    kind: str  # "kink_flips" or "small_norms"
    count: int  # flipped elements, or norms over too few values
    first: str  # first node (graph order) where it occurs
    text: str
    step: int | None = None  # kink flips in a later step's forward (1-based), None for the first forward
    least: int | None = None  # small norms: the fewest values per channel


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
    hazards: list[Hazard] = field(default_factory=list)  # the float32 hazards that excused a check
    allow_vacuous: bool = False
    batch_size: int = 2
    settings: dict[str, Any] = field(default_factory=dict)  # learning rate, momentum, tolerances, ...
    calibrated: bool = False
    spec: str | None = None  # where the spec came from, for reports (a path or a name)
    checks_run: list[str] = field(default_factory=list)  # every check that ran, with rows or not
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why it did not run (never silently left out)
    input_node: str | None = None  # the graph's input: the same images went to both, so it proves nothing
    timings: list[dict[str, Any]] = field(default_factory=list)  # each side's tasks: wall and CPU seconds

    @property
    def ok(self) -> bool:
        return all(self.check_ok(check) for check in self.checks())

    def rows(self, check: str) -> list[Difference]:
        return [d for d in self.differences if d.check == check]

    def check_ok(self, check: str) -> bool:
        rows = self.rows(check)
        return all(d.ok for d in rows) and (self.allow_vacuous or not self.vacuous(check))

    def checks(self) -> list[str]:
        """Every check that ran (in the order of CHECKS), including a check with no rows."""
        seen = {d.check for d in self.differences} | set(self.checks_run)
        return [c for c in CHECKS if c in seen] + sorted(seen - set(CHECKS))

    def vacuous(self, check: str) -> bool:
        """True when the check compared nothing: it has no rows, or every tensor it compared is
        zero (or empty) in both frameworks, as the gradients are with a single class. The
        network input (the same images given to both) does not count as a comparison."""
        rows = [d for d in self.rows(check) if d.node != self.input_node]
        return not any(d.magnitude > 0 or math.isnan(d.magnitude) for d in rows)

    def vacuous_checks(self) -> list[str]:
        return [check for check in self.checks() if self.vacuous(check)]

    def worst(self, check: str) -> Difference | None:
        """The row closest to (or furthest beyond) its limit (None when the check has no rows)."""
        rows = self.rows(check)
        return max(rows, key=lambda d: d.ratio) if rows else None

    def first_divergence(self, check: str | None = None) -> Difference | None:
        return next((d for d in self.differences if not d.ok and (check is None or d.check == check)), None)

    def to_json(self) -> dict[str, Any]:
        """Everything the run found; non-finite numbers are the strings "inf", "-inf", "nan"
        (JSON has no such numbers). Key meanings: docs/parity.md ("--format json")."""
        first = self.first_divergence()
        return _finite({
            "format": JSON_FORMAT,
            "ok": self.ok,
            "spec": self.spec,
            "backends": list(self.backends),
            "seed": self.seed,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "settings": self.settings,
            "allow_vacuous": self.allow_vacuous,
            "first_divergence": _row(first) if first else None,
            "checks": {check: self._check_json(check) for check in self.checks()},
            "skipped": dict(self.skipped),
            "hazards": [asdict(h) for h in self.hazards],
            "kink_flips": self.kink_flips,
            "later_kink_flips": {str(step): flips for step, flips in self.later_kink_flips.items()},
            "calibrated": self.calibrated,
            "notes": self.notes,
            "losses": self.losses,
            "timings": self.timings,
            "differences": [_row(d) for d in self.differences],
        })  # fmt: skip

    def _check_json(self, check: str) -> dict[str, Any]:
        rows = self.rows(check)
        worst = self.worst(check)
        out: dict[str, Any] = {
            "ok": self.check_ok(check),
            "vacuous": self.vacuous(check),
            "precision": self.decided_in.get(check, self.precision),
            "rows": len(rows),
            "failing": sum(not d.ok for d in rows),
            "limits": sorted({d.limit for d in rows}),
            "worst": _row(worst) if worst else None,
        }
        if check in self.float32_worst:
            out["float32_worst"] = _row(self.float32_worst[check])
            out["decided_because"] = [h.text for h in self.hazards]
        return out


def _row(d: Difference) -> dict[str, Any]:
    return asdict(d) | {"ok": d.ok}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_text(report: ParityReport, *, rows: int = 8) -> str:
    lines = [
        f"parity {report.backends[0]} vs {report.backends[1]} ({report.precision}, seed {report.seed}, {report.steps} SGD steps)"
    ]
    lines.append(
        f"{'check':15s} {'worst node':38s} {'tensor':16s} {'max abs':>10s} {'max rel':>10s} {'limit':>8s}  result"
    )
    for check in report.checks():
        worst = report.worst(check)
        vacuous = report.vacuous(check)
        verdict = "ok" if report.check_ok(check) else "FAIL"
        if vacuous:
            verdict = f"{verdict} (vacuous{', allowed' if report.allow_vacuous else ''})"
        where = f", {report.decided_in[check]}" if check in report.decided_in else ""
        if worst is None:
            lines.append(f"{check:15s} {'(nothing to compare)':38s} {'':16s} {'':>10s} {'':>10s} {'':>8s}  {verdict}")
            continue
        lines.append(
            f"{check:15s} {worst.node:38s} {worst.tensor:16s} {worst.max_abs:10.2e} {worst.max_rel:10.2e} "
            f"{worst.limit:8.0e}  {verdict}" + ("" if vacuous else f" ({worst.measure}{where})")
        )
        for row in report.rows(check):  # a backbone's outputs, each on its own line (its worst row is above)
            if row.tensor.startswith("output "):
                lines.append(f"  {row.tensor:13s} {row.node:38s} {'':16s} {row.max_abs:10.2e} {row.max_rel:10.2e} "
                             f"{row.limit:8.0e}  {'ok' if row.ok else 'FAIL'}")  # fmt: skip
        if check in report.float32_worst:
            before = report.float32_worst[check]
            lines.append(
                f"  {'(float32)':13s} {before.node:38s} {before.tensor:16s} {before.max_abs:10.2e} {before.max_rel:10.2e}"
            )
    lines += [f"{check:15s} not run: {why}" for check, why in report.skipped.items()]
    lines += [f"note: {note}" for note in report.notes]
    refused = [c for c in report.vacuous_checks() if not report.allow_vacuous]
    if refused:
        lines.append(
            f"vacuous: {', '.join(refused)} compared nothing (no tensors, or every tensor zero in both frameworks), "
            "so they prove nothing; allow vacuous checks (--allow-vacuous, allow_vacuous=True) to accept that"
        )
    first = report.first_divergence()
    if first is None and not refused:
        lines.append("result: the two models are the same function (within tolerance)")
    elif first is not None:
        lines.append(f"first diverging layer: {first.node} ({first.check}, {first.tensor}: "
                     f"max abs {first.max_abs:.3g}, max rel {first.max_rel:.3g}, limit {first.limit:g})")  # fmt: skip
        bad = [d for d in report.differences if not d.ok][:rows]
        lines += [f"  {d.check:15s} {d.node:38s} {d.tensor:16s} abs {d.max_abs:.3g} rel {d.max_rel:.3g}" for d in bad]
    return "\n".join(lines)
