"""``resnet-spec parity A B`` on two files: two saved models (``.pt``, ``.keras``: any pair of
backends, the same one twice included), or a saved model and an ONNX file ``export`` wrote.

Both see the same batch (the one the spec mode's ``eval`` check sees, from ``--seed`` and
``--batch-size``) and are compared with the spec mode's tolerance rules, in its report format.
Two model files of one architecture are compared node by node, in graph order (so the first
diverging layer is named) and, by default, in float64 (their weights copied into float64
builds, as the spec mode does); an ONNX file gives only its outputs and runs in float32, so a pair
with one is compared on the outputs, in float32. A backbone's outputs (``head.features``) are
each compared, matched by feature name, one row each (tensor ``output NAME``). There is no
training probe: a file's weights are what is compared, not a recipe. Both sides run in this
process (small and medium networks)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import BackendError, backend_for_file, get_backend
from ..pipeline import Architecture, build_architecture
from .engine import SettingsError, _batches
from .report import ParityReport, Tolerances
from .rows import output_row
from .sides import build_options, weight_backend

ONNX_SUFFIX = ".onnx"


@dataclass
class FileSide:
    path: Path
    kind: str  # a backend name, or "onnxruntime"
    arch: Architecture
    runner: Any  # (images) -> {node: output}

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.kind})"

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(self.runner(images))


def open_side(path: Path, precision: str) -> FileSide:
    """``precision`` applies to a model file; an ONNX file always runs as written (float32)."""
    from ..exporting import training_path_hint

    hint = training_path_hint(path)
    if hint:
        raise FileRefused(hint)
    if path.suffix == ONNX_SUFFIX:
        return _onnx_side(path)
    try:
        name = backend_for_file(path)
        backend = get_backend(name)
        model, meta = backend.load(path)
    except BackendError as exc:
        raise FileRefused(str(exc)) from exc
    arch = build_architecture(meta["spec"], filename=f"{path} (stored spec)")
    if precision != "float32":
        weights = weight_backend(name)
        rebuilt = backend.build(arch, **build_options(precision))
        weights.set_weights(rebuilt, arch, weights.get_weights(model, arch))
        model = rebuilt
    return FileSide(path, name, arch, lambda images: backend.node_outputs(model, arch, images))


def _onnx_side(path: Path) -> FileSide:
    from .. import onnx_files

    try:
        meta = onnx_files.metadata(path)
        session = onnx_files.session(path)
        arch = build_architecture(meta["spec"], filename=f"{path} (stored spec)")
        nodes = onnx_files.output_nodes(meta, [o.name for o in session.get_outputs()], arch.graph.output)
    except onnx_files.OnnxFileError as exc:
        raise FileRefused(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from exc

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return {nodes[name]: onnx_files.neutral(value) for name, value in onnx_files.outputs(session, images).items()}

    return FileSide(path, "onnxruntime", arch, run)


class FileRefused(Exception):
    """A file that cannot be read as a model (exit status 1, as a refused model is elsewhere)."""


def compare_files(first: Path, second: Path, *, seed: int = 0, batch_size: int = 2, precision: str = "float64",
                  allow_vacuous: bool = False, tolerances: Tolerances | None = None) -> ParityReport:  # fmt: skip
    """The report of two files on one batch (see the module docstring)."""
    has_onnx = ONNX_SUFFIX in (first.suffix, second.suffix)
    used = "float32" if has_onnx else precision
    a, b = open_side(first, used), open_side(second, used)
    _check_compatible(a, b)
    notes = [f"files: eval outputs on one batch of {batch_size} (seed {seed}); no training probe"]
    same_graph = a.arch.hash == b.arch.hash
    if has_onnx and precision != "float32":
        notes.append("an ONNX file runs in float32, so the pair is compared in float32")
    if not same_graph:
        notes.append(f"the files are of different architectures ({a.arch.hash[:19]}, {b.arch.hash[:19]}): "
                     "only the outputs are compared")  # fmt: skip
    images = _batches(a.arch, seed, batch_size, 1)[0][0]  # float32, as the spec mode feeds float64 builds too
    out_a, out_b = a.outputs(images), b.outputs(images)
    nodes = _compared_nodes(a, b, out_a, out_b, same_graph and not has_onnx)
    tol = tolerances or Tolerances()
    rows = [_row(node, tensor, out_a.get(node_a), out_b.get(node_b), tol) for node, tensor, node_a, node_b in nodes]
    report = ParityReport(backends=(a.label, b.label), seed=seed, steps=0, precision=used, differences=rows,
                          notes=notes, allow_vacuous=allow_vacuous, batch_size=batch_size,
                          settings={"mode": "files", "tolerances": tol.__dict__.copy()},
                          checks_run=["eval"], input_node=a.arch.graph.input.name)  # fmt: skip
    report.spec = f"{first} vs {second}"
    return report


def _row(node: str, tensor: str, a: np.ndarray | None, b: np.ndarray | None, tol: Tolerances) -> Any:
    row = output_row("eval", node, a, b if b is not None else np.zeros(0), tol)
    return replace(row, tensor=tensor) if tensor != "output" else row


def _named_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """Output name -> shape: a backbone's features, else the one output (named by its node)."""
    return {name: arch.shape_of(node) for name, node in arch.graph.named_outputs().items()}


def _check_compatible(a: FileSide, b: FileSide) -> None:
    spec_a, spec_b = a.arch.spec.input, b.arch.spec.input
    shape_a = (spec_a.height, spec_a.width, spec_a.channels)
    shape_b = (spec_b.height, spec_b.width, spec_b.channels)
    if shape_a != shape_b:
        raise SettingsError(f"{a.path} takes {shape_a} images, {b.path} {shape_b}: they cannot see the same batch")
    backbones = bool(a.arch.graph.outputs), bool(b.arch.graph.outputs)
    if backbones == (False, False):
        if a.arch.output_shape != b.arch.output_shape:
            raise SettingsError(f"{a.path} gives {a.arch.output_shape} outputs, {b.path} {b.arch.output_shape}: "
                                "nothing to compare")  # fmt: skip
        return
    named_a, named_b = _named_shapes(a.arch), _named_shapes(b.arch)
    if named_a != named_b:
        def show(named: dict[str, tuple[int, ...]]) -> str:
            return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in named.items())

        raise SettingsError(f"{a.path} gives the outputs {show(named_a)}, {b.path} {show(named_b)}: a backbone is "
                            "compared with one of the same feature names and shapes")  # fmt: skip


def _compared_nodes(a: FileSide, b: FileSide, out_a: dict[str, np.ndarray], out_b: dict[str, np.ndarray],
                    same_graph: bool) -> list[tuple[str, str, str, str]]:  # fmt: skip
    """(row name, tensor label, node of a, node of b): every node both computed, in graph order,
    when the architectures are one (a backbone's feature outputs marked ``output NAME``);
    otherwise (or with an ONNX file) every output, matched by name."""
    marked = {node: f"output {name}" for name, node in b.arch.graph.outputs.items()}
    if same_graph and len(out_a) > 1 and len(out_b) > 1:
        return [(node.name, marked.get(node.name, "output"), node.name, node.name) for node in b.arch.graph
                if node.name in out_b]  # fmt: skip
    if not b.arch.graph.outputs:
        return [(b.arch.graph.output, "output", a.arch.graph.output, b.arch.graph.output)]
    nodes_a = a.arch.graph.named_outputs()
    return [(node, f"output {name}", nodes_a[name], node) for name, node in b.arch.graph.outputs.items()]
