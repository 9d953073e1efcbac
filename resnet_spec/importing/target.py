"""The spec's side of a match: its weight nodes ("slots"), their neutral shapes, its blocks, and
its dataflow as :class:`~resnet_spec.importing.source.GraphOp` s.

The spec's own node names are used freely here (``stage2.block0.shortcut.conv``): they are the
project's, documented in :mod:`resnet_spec.expand`. Only the *source's* names are never trusted
as more than a hint of its hierarchy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import graph as g
from ..weights import shapes as neutral_shapes
from .source import GraphOp, Kind, Unit, signature

if TYPE_CHECKING:
    from ..pipeline import Architecture

_ELEMENTWISE = (g.Activation, g.Dropout, g.DropPath, g.BatchNorm)


@dataclass(frozen=True)
class Slot:
    """One weight node of the spec."""

    node: g.Node
    shapes: dict[str, tuple[int, ...]]
    excluded: bool = False  # left to the caller (a new classifier): matched by kind and input size only

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def kind(self) -> Kind:
        return "conv" if isinstance(self.node, g.Conv2D) else "dense" if isinstance(self.node, g.Dense) else "norm"

    def signature(self) -> tuple[object, ...]:
        return signature(self.kind, self.shapes)

    def first_key(self) -> str:
        return next(iter(self.shapes))


@dataclass
class Block:
    name: str  # "stage2.block0"
    branch: list[Slot] = field(default_factory=list)  # in graph order, squeeze-excite included
    shortcut: list[Slot] = field(default_factory=list)

    @property
    def slots(self) -> list[Slot]:
        return [*self.branch, *self.shortcut]


@dataclass
class Target:
    arch: Architecture
    slots: list[Slot]  # graph order
    stem: list[Slot]
    blocks: list[Block]
    head: list[Slot]

    def ops(self) -> tuple[list[GraphOp], int]:
        """The spec's graph as ops: adds are (branch, shortcut), scales (x, gate)."""
        return arch_ops(self.arch, {slot.name: slot for slot in self.slots})


def arch_ops(arch: Architecture, units: Mapping[str, Slot | Unit]) -> tuple[list[GraphOp], int]:
    """A resnet-spec graph as ops, each weight node carrying ``units[name]``: the spec's own slots,
    or the units of a resnet-spec model file (whose graph is known exactly, so adds are ordered)."""
    index: dict[str, int] = {}
    ops: list[GraphOp] = []
    for node in arch.graph:
        inputs = tuple(index[i] for i in node.inputs)
        unit = units.get(node.name)
        if isinstance(node, g.Input):
            op = GraphOp("input", (), node.name)
        elif unit is not None:
            op = GraphOp(_KINDS[type(node)], inputs, node.name, unit=unit)
        elif isinstance(node, (g.Add, g.Scale)):
            op = GraphOp("add" if isinstance(node, g.Add) else "mul", inputs, node.name, ordered=True)
        else:
            op = GraphOp("other", inputs, node.name)
        index[node.name] = len(ops)
        ops.append(op)
    return ops, index[arch.graph.output]


_KINDS: dict[type, Kind] = {g.Conv2D: "conv", g.BatchNorm: "norm", g.Dense: "dense"}


def target_of(arch: Architecture, excluded: Iterable[str] = ()) -> Target:
    skip = set(excluded)
    slots = [Slot(arch.graph[name], entry, excluded=name in skip) for name, entry in neutral_shapes(arch).items()]
    stem: list[Slot] = []
    head: list[Slot] = []
    blocks: dict[str, Block] = {}
    for slot in slots:
        root, _, rest = slot.name.partition(".")
        if root == "stem":
            stem.append(slot)
        elif root == "head":
            head.append(slot)
        else:
            prefix = f"{root}.{rest.partition('.')[0]}"
            block = blocks.setdefault(prefix, Block(prefix))
            (block.shortcut if ".shortcut." in slot.name else block.branch).append(slot)
    return Target(arch, slots, stem, list(blocks.values()), head)


def flatten_input(arch: Architecture, node: g.Node) -> tuple[int, int, int] | None:
    """The (H, W, C) map a vector node's features were flattened from, when it had more than one
    cell: a channels-first source orders those features (c, h, w), the neutral layout (h, w, c)."""
    current = node
    while current.inputs:
        source = arch.graph[current.inputs[0]]
        if isinstance(source, g.Flatten):
            shape = arch.shape_of(source.inputs[0])
            if len(shape) == 3 and shape[0] * shape[1] > 1:
                return shape[0], shape[1], shape[2]
            return None
        if not isinstance(source, _ELEMENTWISE) or len(arch.shape_of(source.name)) != 1:
            return None
        current = source
    return None
