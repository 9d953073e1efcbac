"""What a backend's parity probe hands out while it runs, instead of returning everything at
the end, and how a network is cut into segments whose activations can be recomputed.

A backend whose ``train_probe`` accepts ``sink=`` gives each result to the sink as soon as it
exists (a node's train-mode output right after the node ran, a weight node's gradients right
after its segment's backward pass) and keeps nothing. With ``segments=`` it stores only the
outputs at segment boundaries during the forward pass and runs each segment's forward again,
under the gradient tape, just before its backward pass (gradient checkpointing): the arithmetic
is the same, so are the results, and the activations held at once are one segment's.
Without ``sink`` the probe returns a full :class:`~resnet_spec.backends.ProbeResult`, as every
backend must be able to."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .. import graph as g
from ..backends import ProbeResult

if TYPE_CHECKING:
    from ..pipeline import Architecture


class ProbeSink(Protocol):
    """Receives a probe's results (neutral layout, NumPy arrays the probe no longer uses)."""

    def output(self, node: str, value: np.ndarray) -> None:
        """The train-mode output of ``node`` in the first step's forward (graph order, input first)."""

    def stats(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        """A batch norm's moving statistics right after that forward."""

    def gradients(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        """d loss / d weight of one weight node at the starting weights (any order)."""

    def weights_after(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        """Every weight of one weight node after the steps (graph order)."""


class CollectingSink:
    """Collects everything into a :class:`ProbeResult` (what a probe returns without a sink)."""

    def __init__(self) -> None:
        self.result = ProbeResult({}, {}, {}, {}, [])

    def output(self, node: str, value: np.ndarray) -> None:
        self.result.train_outputs[node] = value

    def stats(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        self.result.stats_after_forward[node] = dict(tensors)

    def gradients(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        self.result.gradients[node] = dict(tensors)

    def weights_after(self, node: str, tensors: Mapping[str, np.ndarray]) -> None:
        self.result.weights_after[node] = dict(tensors)


def replay(result: ProbeResult, sink: ProbeSink, arch: Architecture) -> None:
    """Feed a whole :class:`ProbeResult` to ``sink`` (backends whose probe cannot stream)."""
    order = [node.name for node in arch.graph]
    for name in order:
        if name in result.train_outputs:
            sink.output(name, result.train_outputs[name])
    for kind, values in (("stats", result.stats_after_forward), ("gradients", result.gradients),
                         ("weights_after", result.weights_after)):  # fmt: skip
        for name in order:
            if name in values:
                getattr(sink, kind)(name, values[name])


def cut_points(graph: g.Graph) -> list[int]:
    """Positions p (in graph order) after which the only value still needed is node p's output:
    a backward pass can stop there and restart from that one tensor."""
    nodes = list(graph)
    position = {node.name: i for i, node in enumerate(nodes)}
    last = list(range(len(nodes)))  # the last position that reads each node's output
    for i, node in enumerate(nodes):
        for name in node.inputs:
            last[position[name]] = max(last[position[name]], i)
    crossing = np.zeros(len(nodes) + 1, np.int64)  # values live across the boundary after p
    for i, end in enumerate(last):
        crossing[i] += 1
        crossing[end] -= 1
    live = np.cumsum(crossing)
    return [p for p in range(len(nodes) - 1) if live[p] == 1 and last[p] > p]


def activation_bytes(arch: Architecture, batch_size: int, itemsize: int) -> int:
    """Every node's output for one batch: an upper bound on what a forward pass keeps for backward."""
    return sum(math.prod(arch.shape_of(node.name)) for node in arch.graph) * batch_size * itemsize


def segments(arch: Architecture, batch_size: int, itemsize: int, budget: int) -> tuple[tuple[str, ...], ...]:
    """Consecutive runs of graph nodes (the input excluded), each ending at a cut point (the last
    at the last node), greedily as long as their outputs stay within ``budget`` bytes."""
    nodes = list(arch.graph)
    cuts = set(cut_points(arch.graph))
    out: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for i, node in enumerate(nodes):
        if isinstance(node, g.Input):
            continue
        current.append(node.name)
        size += math.prod(arch.shape_of(node.name)) * batch_size * itemsize
        if i in cuts and size >= budget:
            out.append(tuple(current))
            current, size = [], 0
    if current:
        out.append(tuple(current))
    return tuple(out)
