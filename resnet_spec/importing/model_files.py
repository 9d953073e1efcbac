"""A resnet-spec model file as a source: its stored spec gives the graph exactly.

Both backends' files carry the spec and its architecture hash (``compile`` / ``train`` write
them). The spec is validated and compiled again and must give the stored hash, as the backends'
own ``load`` requires; the file's tensors must then fit that graph, node by node. Neither
framework's loader runs: the tensors come from :mod:`.read_torch` / :mod:`.read_keras`, so a
``.keras`` archive's ``config.json`` is never deserialized.
"""

from __future__ import annotations

from typing import Any

from .. import graph as g
from ..diagnostics import SpecError
from ..pipeline import build_architecture
from ..weights import shapes as neutral_shapes
from .safety import WeightsImportError
from .source import GraphSource, Unit, signature
from .target import arch_ops


def from_model_file(where: str, spec: Any, stored_hash: Any, units: list[Unit], framework: str) -> GraphSource:
    if not isinstance(spec, dict) or not isinstance(stored_hash, str):
        raise WeightsImportError(f"{where}: a resnet-spec model file without its spec and hash")
    try:
        arch = build_architecture(spec, filename=f"{where} (stored spec)")
    except SpecError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise WeightsImportError(f"{where}: the stored spec no longer validates: {first}") from None
    if arch.hash != stored_hash:
        raise WeightsImportError(
            f"{where}: the stored spec compiles to architecture {arch.hash[:19]}, the weights were saved for "
            f"{stored_hash[:19]}; refusing weights whose network is not known"
        )
    by_name = {unit.label: unit for unit in units}
    expected = neutral_shapes(arch)
    for name, entry in expected.items():
        unit = by_name.get(name)
        kind = "conv" if "kernel" in entry and len(entry["kernel"]) == 4 else "dense" if "kernel" in entry else "norm"
        if unit is None or unit.signature() != signature(kind, entry):
            found = unit.describe() if unit else "nothing"
            raise WeightsImportError(f"{where}: the file's weights do not fit its own spec at {name} (found {found})")
    extra = sorted(set(by_name) - set(expected))
    if extra:
        raise WeightsImportError(f"{where}: tensors for layers its own spec does not have: {', '.join(extra[:3])}")
    ops, output = arch_ops(arch, by_name)
    for node in arch.graph:
        if isinstance(node, g.Conv2D):  # the stored graph says where every stride is
            by_name[node.name].strides, by_name[node.name].groups = node.strides, node.groups
        if isinstance(node, g.BatchNorm):
            by_name[node.name].epsilon = node.epsilon
    description = f"{where} (resnet-spec {framework} model {arch.name}, {arch.hash[:19]})"
    return GraphSource(description, ops, output, units=list(by_name.values()))
