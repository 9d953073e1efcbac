"""The pipeline, one call per stage: load -> schema check -> typed spec -> expand -> graph ->
shape/parameter pass. Every stage returns diagnostics instead of raising, and the source map
gives each diagnostic its file, line and column, however late it was found."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import budget, loader, schema_check, shapes, training_check
from .canonical import architecture_hash, canonical_form
from .diagnostics import Diagnostic, Report, SpecError
from .expand import expand
from .graph import Graph
from .spec import ResNetSpec

Source = str | os.PathLike[str] | Mapping[str, Any]


@dataclass
class Architecture:
    """A validated spec with its resolved graph, shapes, parameter counts and MACs."""

    spec: ResNetSpec
    graph: Graph
    analysis: shapes.Analysis
    source: loader.SourceMap | None = None

    @property
    def name(self) -> str:
        return self.spec.name or "resnet"

    @cached_property
    def hash(self) -> str:
        return architecture_hash(self.graph)

    def canonical_form(self) -> dict[str, Any]:
        return canonical_form(self.graph)

    @property
    def params_trainable(self) -> int:
        return self.analysis.params_trainable

    @property
    def params_non_trainable(self) -> int:
        return self.analysis.params_non_trainable

    @property
    def macs(self) -> int:
        return self.analysis.macs

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.analysis.info[self.graph.output].output_shape

    def shape_of(self, node: str) -> tuple[int, ...]:
        return self.analysis.info[node].output_shape


@dataclass
class Result:
    """What :func:`validate` returns: the report, and the architecture when there were no errors."""

    report: Report
    document: loader.LoadedDocument | None = None
    spec: ResNetSpec | None = None
    architecture: Architecture | None = None
    diagnostics: list[Diagnostic] = field(init=False)

    def __post_init__(self) -> None:
        self.diagnostics = self.report.diagnostics

    @property
    def ok(self) -> bool:
        return self.report.ok and self.architecture is not None


def load(source: Source, *, overrides: Sequence[str] = (), filename: str | None = None) -> loader.LoadedDocument:
    """Read a file path, YAML/JSON text (``filename`` names it in messages) or an already-parsed mapping."""
    if isinstance(source, Mapping):
        problems = _nesting_problems(source)
        doc = loader.LoadedDocument(
            None if problems else dict(source), loader.SourceMap(filename or "<mapping>", "", {}, {}), problems
        )
    elif isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and not source.lstrip().startswith("{")):
        doc = loader.load_file(source)
    else:
        doc = loader.load_text(source, filename=filename or "<string>")
    return loader.apply_overrides(doc, overrides) if overrides and doc.ok else doc


_LIMITS = loader.Limits()


def _nesting_problems(data: Any, limits: loader.Limits = _LIMITS) -> list[Diagnostic]:
    """The loader's depth and node limits for mappings handed in directly (a stored spec in a
    saved model, the Python API). Iterative, so deep nesting cannot blow the stack; nodes are
    counted as visited, so shared sub-lists (pickle and YAML keep references) cannot make the
    walk exponential."""
    stack, visited = [(data, 1)], 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        if depth > limits.max_depth:
            return [Diagnostic("RS008", f"the mapping nests deeper than {limits.max_depth} levels")]
        if visited > limits.max_nodes:
            return [Diagnostic("RS007", f"the mapping holds more than {limits.max_nodes:,} values (shared references counted each time)")]
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list)))
    return []


def validate(source: Source, *, overrides: Sequence[str] = (), filename: str | None = None) -> Result:
    """Run every check; never raises for problems in the spec (they are in ``result.report``)."""
    doc = load(source, overrides=overrides, filename=filename)
    if not doc.ok:
        return Result(Report(list(doc.diagnostics)), doc)
    spec, problems = schema_check.check(doc.data)
    if spec is None:
        return Result(_located(doc, problems), doc)
    training_problems = training_check.check(spec)
    graph, problems = expand(spec)
    if graph is None or training_problems:
        return Result(_located(doc, training_problems + problems), doc, spec)
    analysis = shapes.analyze(graph)
    problems = analysis.diagnostics or budget.check_exact(
        analysis.params_trainable + analysis.params_non_trainable, len(analysis.graph)
    )
    if problems:
        return Result(_located(doc, problems), doc, spec)
    arch = Architecture(spec, analysis.graph, analysis, doc.source)
    return Result(Report([]), doc, spec, arch)


def build_architecture(source: Source, *, overrides: Sequence[str] = (), filename: str | None = None) -> Architecture:
    """Like :func:`validate` but returns the architecture or raises :class:`SpecError`."""
    result = validate(source, overrides=overrides, filename=filename)
    if result.architecture is None:
        raise SpecError(result.report.sorted())
    return result.architecture


def _located(doc: loader.LoadedDocument, problems: list[Diagnostic]) -> Report:
    prefer = {"RS101": "key", "RS102": "value", "RS111": "key"}
    return Report([doc.source.attach(d, prefer=prefer.get(d.code, "value")) for d in problems])  # type: ignore[arg-type]
