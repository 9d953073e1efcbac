"""What an import returns: the weights, and a report of where each one came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..weights import Weights
from .safety import WeightsImportError


@dataclass
class ImportResult:
    """Weights in the neutral layout of :mod:`resnet_spec.weights`, by spec node name, for every
    weight node except those in ``new`` (left to the caller: a new classifier keeps its own
    initialization). Hand them to a backend with :meth:`complete`::

        result = import_weights(arch, "resnet50.pth", classifier="auto")
        backend.set_weights(model, arch, result.complete(backend.get_weights(model, arch)))
    """

    weights: Weights
    source: str  # what was read ("resnet50.pth (PyTorch state dict, 320 tensors)")
    method: Literal["graph", "names"]  # dataflow of a model, or the hierarchy of a file's names
    matched: dict[str, dict[str, str]]  # spec node -> neutral key -> the source tensor's name
    new: list[str] = field(default_factory=list)  # spec nodes not imported
    unused: list[str] = field(default_factory=list)  # source tensors not imported
    notes: list[str] = field(default_factory=list)
    # new spec nodes that the source has a layer at: that layer's neutral shapes (the old classifier's)
    replaced: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def tensor_count(self) -> int:
        return sum(len(entry) for entry in self.weights.values())

    def complete(self, base: Mapping[str, Mapping[str, np.ndarray]]) -> Weights:
        """``base`` (every weight of the model, e.g. ``backend.get_weights(model, arch)``) with the
        imported weights in place of its own."""
        missing = [name for name in self.new if name not in base]
        if missing:
            raise WeightsImportError(f"no weights given for the new layers {', '.join(missing)}")
        merged: Weights = {name: dict(entry) for name, entry in base.items()}
        merged.update({name: dict(entry) for name, entry in self.weights.items()})
        return merged

    def summary(self) -> str:
        how = "by its dataflow" if self.method == "graph" else "by the structure of its names"
        lines = [
            f"imported {self.tensor_count} tensors into {len(self.weights)} layers from {self.source}, matched {how}"
        ]
        if self.new:
            lines.append(f"new (not imported): {', '.join(self.new)}")
        if self.unused:
            shown = ", ".join(self.unused[:6]) + (f" and {len(self.unused) - 6} more" if len(self.unused) > 6 else "")
            lines.append(f"not used from the source: {shown}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def table(self) -> str:
        """One line per spec node: where its weights came from."""
        width = max((len(name) for name in self.matched), default=0)
        rows = []
        for name, keys in self.matched.items():
            layers = sorted(
                {source.rsplit(".", 1)[0] if "." in source else source.rsplit("/", 1)[0] for source in keys.values()}
            )
            rows.append(f"{name:<{width}}  <- {', '.join(layers)}")
        rows.extend(f"{name:<{width}}  (new)" for name in self.new)
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "method": self.method,
            "tensors": self.tensor_count,
            "matched": self.matched,
            "shapes": {n: {k: list(v.shape) for k, v in e.items()} for n, e in self.weights.items()},
            "new": self.new,
            "unused": self.unused,
            "notes": self.notes,
        }
