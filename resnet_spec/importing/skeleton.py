"""The residual structure of a dataflow graph, framework-free.

ResNets are series-parallel graphs: a chain of weighted layers that forks at a block's input and
merges again at its add (the residual branch and the shortcut) or at a multiply
(squeeze-and-excitation: the input and its gate). :func:`skeleton` reduces a graph of
:class:`~resnet_spec.importing.source.GraphOp` s to that structure:

* a :class:`Leaf` per weighted op, in dataflow order;
* a :class:`Merge` per add / multiply, holding the two paths from the fork to the merge.

The fork of a merge is its immediate dominator (every path from the input to the merge passes
through it), found in one pass over the topologically ordered ops (Cooper, Harvey and Kennedy's
intersection). Ops without weights (activations, pooling, padding, reshapes) are left out: they
carry no tensors to match; their effect on shapes shows in the weights' shapes, and a graph
source's convolution strides are compared separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from .source import GraphOp


class StructureError(ValueError):
    """The graph has a merge a spec cannot express (a concat, a three-way sum...)."""


@dataclass
class Leaf:
    unit: object  # a source Unit or a spec Slot
    label: str


@dataclass
class Merge:
    kind: str  # "add" | "mul"
    sides: tuple[list[Item], list[Item]]
    ordered: bool  # sides known to be (branch, shortcut) / (input, gate)
    label: str


Item = Leaf | Merge


def skeleton(ops: list[GraphOp], output: int) -> list[Item]:
    """The items from the graph's input to ``output``."""
    inputs = [i for i, op in enumerate(ops) if op.kind == "input"]
    if len(inputs) != 1:
        raise StructureError(f"the graph has {len(inputs)} inputs; a ResNet has one")
    idom = _dominators(ops, inputs[0])
    if output not in idom:
        raise StructureError(f"the output ({ops[output].label}) does not depend on the input")
    return _path(ops, idom, output, inputs[0])


def _dominators(ops: list[GraphOp], source: int) -> dict[int, int]:
    idom = {source: source}
    for index in range(source + 1, len(ops)):
        preds = [p for p in ops[index].inputs if p in idom]
        if not preds:
            continue  # a constant: not reachable from the input
        dominator = preds[0]
        for other in preds[1:]:
            dominator = _intersect(idom, dominator, other)
        idom[index] = dominator
    return idom


def _intersect(idom: dict[int, int], a: int, b: int) -> int:
    while a != b:
        while a > b:
            a = idom[a]
        while b > a:
            b = idom[b]
    return a


def _path(ops: list[GraphOp], idom: dict[int, int], node: int, stop: int) -> list[Item]:
    items: list[Item] = []
    while node != stop:
        op = ops[node]
        preds = [p for p in op.inputs if p in idom]
        if op.kind == "input" or not preds:
            raise StructureError(f"{op.label} is not reached from {ops[stop].label}")  # pragma: no cover - dominators
        if len(preds) == 1:
            if op.unit is not None:
                items.append(Leaf(op.unit, op.label))
            node = preds[0]
        elif len(preds) == 2 and op.kind in ("add", "mul"):
            fork = idom[node]
            sides = (_path(ops, idom, preds[0], fork), _path(ops, idom, preds[1], fork))
            items.append(Merge(op.kind, sides, op.ordered, op.label))
            node = fork
        else:
            what = "a merge of three or more inputs" if len(preds) > 2 else f"'{op.label}' merges two paths"
            raise StructureError(f"{what}; a spec merges paths only by adding (residual) or multiplying (gate)")
    items.reverse()
    return items


def leaves(items: list[Item]) -> list[Leaf]:
    out: list[Leaf] = []
    for item in items:
        if isinstance(item, Leaf):
            out.append(item)
        else:
            out.extend(leaves(item.sides[0]))
            out.extend(leaves(item.sides[1]))
    return out
