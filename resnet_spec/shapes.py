"""Shape inference, parameter counts and MACs over a :class:`~resnet_spec.graph.Graph`.

One pass in topological order. Each node gets a :class:`NodeInfo`; every problem becomes a
:class:`~resnet_spec.diagnostics.Diagnostic` with the node's spec key path (the source map turns
it into file:line:column later). Nodes downstream of a failed node are skipped, so one mistake
gives one diagnostic, not a cascade.

Counting conventions (they match the frameworks' own counts):

* trainable parameters: conv/dense kernels and biases, batch-norm gamma and beta;
* non-trainable: batch-norm running mean and variance (Keras counts them, PyTorch keeps them as
  buffers);
* MACs: multiply-accumulates of convolutions and dense layers only, as torchvision's published
  GFLOPS figures count them (normalization, activations, pooling and adds are not counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

from . import graph as g
from .diagnostics import Diagnostic

PaddingSetting = Literal["same", "valid", "symmetric"] | int | list[int]

Shape = tuple[int, ...]  # (H, W, C) for feature maps, (C,) for vectors


class NodeInfo(NamedTuple):
    """What the shape pass found for one node. A named tuple rather than a frozen dataclass: one
    is made per node, and a frozen dataclass's __init__ costs four times as much."""

    output_shape: Shape
    params_trainable: int = 0
    params_non_trainable: int = 0
    macs: int = 0


@dataclass
class Analysis:
    graph: g.Graph
    info: dict[str, NodeInfo]
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    # Totals over every node, summed once (validation and the CLI both ask for them).
    @cached_property
    def params_trainable(self) -> int:
        return sum(i.params_trainable for i in self.info.values())

    @cached_property
    def params_non_trainable(self) -> int:
        return sum(i.params_non_trainable for i in self.info.values())

    @cached_property
    def macs(self) -> int:
        return sum(i.macs for i in self.info.values())


class ShapeProblem(Exception):
    """Internal signal from a per-node rule; turned into a Diagnostic by :func:`analyze`."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def analyze(graph: g.Graph) -> Analysis:
    """Every node's output shape, parameters and MACs, and every problem found, in one pass."""
    info: dict[str, NodeInfo] = {}
    diagnostics: list[Diagnostic] = []
    for node in graph:
        try:
            shapes = [info[name].output_shape for name in node.inputs]
        except KeyError:
            continue  # an input already failed and was reported
        found, problem = step(node, shapes)
        if problem is not None:
            diagnostics.append(
                Diagnostic(problem.code, f"{node.name}: {problem.message}", hint=problem.hint, key_path=node.origin)
            )
        if found is not None:
            info[node.name] = found
    return Analysis(graph, info, diagnostics)


def step(node: g.Node, shapes: list[Shape]) -> tuple[NodeInfo | None, ShapeProblem | None]:
    """One node of the pass: its info, or the problem that stops everything downstream of it.
    A residual add whose shapes differ is reported and the pass goes on with the branch's shape,
    so that every bad add of a network is reported at once."""
    try:
        return _rule_for(type(node))(node, *shapes), None
    except ShapeProblem as problem:
        return (NodeInfo(shapes[0]) if isinstance(node, g.Add) else None), problem


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same": output ceil(size / stride); an odd total puts the extra cell after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(value: PaddingSetting, kernel: g.Pair, strides: g.Pair, shape: Shape | None) -> g.Padding4:
    """A spec's padding as (top, bottom, left, right) for a window over an input of ``shape``.

    Only "same" depends on the input's size. Where that size is unknown (downstream of a node
    that failed the shape rules, which :func:`analyze` reports, skipping everything after it)
    zero padding stands in: such a graph is never handed to a backend."""
    if value == "same":
        if shape is None or len(shape) != 3:
            return (0, 0, 0, 0)
        return same_padding(shape[0], kernel[0], strides[0]) + same_padding(shape[1], kernel[1], strides[1])
    if value == "valid":
        return (0, 0, 0, 0)
    if value == "symmetric":
        return (kernel[0] // 2, kernel[0] // 2, kernel[1] // 2, kernel[1] // 2)
    return explicit_padding(value)


def explicit_padding(value: int | list[int]) -> g.Padding4:
    if isinstance(value, int):
        return (value, value, value, value)
    top, bottom, left, right = value
    return (top, bottom, left, right)


def fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _feature_map(node: g.Node, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeProblem(
            "RS209",
            f"{node.op} needs a feature map (height, width, channels), got a vector of {fmt(shape)}",
            "put spatial layers before `flatten` / `global_avg_pool` in the head",
        )
    h, w, c = shape
    return h, w, c


def _window_output(node: g.Node, size: int, kernel: int, stride: int, pad: tuple[int, int], axis: str) -> int:
    padded = size + pad[0] + pad[1]
    if kernel > padded:
        raise ShapeProblem(
            "RS203",
            f"{kernel}-wide window on the {axis} axis does not fit its input of {size} (padded to {padded})",
            "use 'same' padding, a smaller window, or a larger input",
        )
    out = (padded - kernel) // stride + 1
    if out <= 0:
        raise ShapeProblem("RS202", f"output {axis} would be {out}", "reduce the number of stride-2 layers or enlarge the input")
    return out


def _spatial(node: g.Node, shape: Shape, kernel: g.Pair, strides: g.Pair, padding: g.Padding4) -> tuple[int, int]:
    h, w, _ = _feature_map(node, shape)
    return (
        _window_output(node, h, kernel[0], strides[0], (padding[0], padding[1]), "height"),
        _window_output(node, w, kernel[1], strides[1], (padding[2], padding[3]), "width"),
    )


Rule = Callable[..., NodeInfo]
# One rule per node type, looked up by exact type: functools.singledispatch walks the MRO through
# a weak-keyed cache on every call, a noticeable share of validating a 4,000-node graph.
_RULES: dict[type[g.Node], Rule] = {}


def infer(node: g.Node, *inputs: Shape) -> NodeInfo:
    """The output shape, parameters and MACs of ``node`` given its input shapes."""
    return _rule_for(type(node))(node, *inputs)


def _rule_for(kind: type[g.Node]) -> Rule:
    if kind in _RULES:
        return _RULES[kind]
    for base in kind.__mro__[1:]:  # a subclass of a node type follows its base's rule
        if base in _RULES:
            return _RULES[base]
    raise NotImplementedError(f"no shape rule for {kind.__name__}")


def _rule(*kinds: type[g.Node]) -> Callable[[Rule], Rule]:
    def register(rule: Rule) -> Rule:
        _RULES.update(dict.fromkeys(kinds, rule))
        return rule

    return register


@_rule(g.Input)
def _(node: g.Input) -> NodeInfo:
    return NodeInfo(node.shape)


@_rule(g.Conv2D)
def _(node: g.Conv2D, shape: Shape) -> NodeInfo:
    _, _, cin = _feature_map(node, shape)
    if cin % node.groups or node.filters % node.groups:
        raise ShapeProblem(
            "RS206",
            f"groups={node.groups} must divide input channels {cin} and filters {node.filters}",
            "choose a group count that divides both channel counts",
        )
    ho, wo = _spatial(node, shape, node.kernel_size, node.strides, node.padding)
    per_output = node.kernel_size[0] * node.kernel_size[1] * (cin // node.groups)
    params = per_output * node.filters + (node.filters if node.use_bias else 0)
    return NodeInfo((ho, wo, node.filters), params_trainable=params, macs=ho * wo * node.filters * per_output)


@_rule(g.BatchNorm)
def _(node: g.BatchNorm, shape: Shape) -> NodeInfo:
    channels = shape[-1]
    learned = channels * (int(node.center) + int(node.scale))
    return NodeInfo(shape, params_trainable=learned, params_non_trainable=2 * channels)


@_rule(g.Activation, g.Dropout, g.DropPath)
def _(node: g.Node, shape: Shape) -> NodeInfo:
    return NodeInfo(shape)


@_rule(g.ZeroPad)
def _(node: g.ZeroPad, shape: Shape) -> NodeInfo:
    h, w, c = _feature_map(node, shape)
    top, bottom, left, right = node.padding
    return NodeInfo((h + top + bottom, w + left + right, c))


@_rule(g.MaxPool, g.AvgPool)
def _(node: g.MaxPool | g.AvgPool, shape: Shape) -> NodeInfo:
    top, bottom, left, right = node.padding
    if max(top, bottom) >= node.pool_size[0] or max(left, right) >= node.pool_size[1]:
        # A window made only of padding has no real cell: max would be -inf, mean 0/0.
        raise ShapeProblem(
            "RS203",
            f"padding {node.padding} is not smaller than the pool window {node.pool_size}",
            "use padding smaller than the window",
        )
    ho, wo = _spatial(node, shape, node.pool_size, node.strides, node.padding)
    return NodeInfo((ho, wo, shape[-1]))


@_rule(g.GlobalAvgPool)
def _(node: g.GlobalAvgPool, shape: Shape) -> NodeInfo:
    _, _, c = _feature_map(node, shape)
    return NodeInfo((1, 1, c) if node.keepdims else (c,))


@_rule(g.Flatten)
def _(node: g.Flatten, shape: Shape) -> NodeInfo:
    return NodeInfo((math.prod(shape),))


@_rule(g.Dense)
def _(node: g.Dense, shape: Shape) -> NodeInfo:
    if len(shape) != 1:
        raise ShapeProblem(
            "RS209",
            f"dense layer needs a vector but receives a {fmt(shape)} feature map",
            "add `flatten` or `global_avg_pool` before it in the head",
        )
    params = shape[0] * node.units + (node.units if node.use_bias else 0)
    return NodeInfo((node.units,), params_trainable=params, macs=shape[0] * node.units)


@_rule(g.Add)
def _(node: g.Add, branch: Shape, shortcut: Shape) -> NodeInfo:
    if branch != shortcut:
        raise ShapeProblem(
            "RS201",
            f"residual add: the residual branch ({node.inputs[0]}) gives {fmt(branch)} "
            f"but the shortcut ({node.inputs[1]}) gives {fmt(shortcut)}",
            _add_hint(branch, shortcut),
        )
    return NodeInfo(branch)


def _add_hint(branch: Shape, shortcut: Shape) -> str:
    if len(branch) == 3 and len(shortcut) == 3 and branch[:2] != shortcut[:2]:
        return (
            "the branch changes the spatial size but the shortcut does not: use `shortcut: projection` "
            "(1x1 conv with the same stride) or `shortcut: zero_pad` for this stage"
        )
    return "the branch changes the channel count: use `shortcut: projection` or `shortcut: zero_pad` for this stage"


@_rule(g.Scale)
def _(node: g.Scale, features: Shape, weights: Shape) -> NodeInfo:
    if len(features) != 3 or weights != (1, 1, features[-1]):
        raise ShapeProblem("RS201", f"channel scale needs (1, 1, {features[-1]}) weights, got {fmt(weights)}")
    return NodeInfo(features)


@_rule(g.ChannelPadShortcut)
def _(node: g.ChannelPadShortcut, shape: Shape) -> NodeInfo:
    h, w, c = _feature_map(node, shape)
    if node.pad_before < 0 or node.pad_after < 0:
        raise ShapeProblem(
            "RS204",
            f"zero-pad shortcut would have to remove {-(node.pad_before + node.pad_after)} channels",
            "use `shortcut: projection` where a stage has fewer channels than the one before",
        )
    s = node.stride
    return NodeInfo((-(-h // s), -(-w // s), c + node.pad_before + node.pad_after))
