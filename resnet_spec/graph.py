"""The backend-neutral graph: a small, documented IR in the spirit of torch.fx.

A :class:`Graph` is a list of typed nodes in topological order. Every node has

* ``name``: a deterministic hierarchical name (``stage2.block0.conv1``) that backends reuse as
  layer / submodule names, so weights can be moved between frameworks by name;
* ``inputs``: the names of the nodes it reads (one, except :class:`Add` and :class:`Scale`);
* ``origin``: the key path in the spec that produced it, so a problem found later (a residual
  add whose shapes differ) can still point at a line of the file.

Conventions every backend must follow:

* Feature maps are described as (height, width, channels). Backends choose their own memory
  layout (Keras NHWC, PyTorch NCHW); shapes in :mod:`resnet_spec.shapes` are layout-free.
* Padding is explicit and per side: ``(top, bottom, left, right)``, resolved before a node is
  stored: the expander knows each input's size when it adds a node, so a spec's "same" becomes
  TensorFlow's rule for that size (extra row/column at the bottom/right) right there
  (:func:`resnet_spec.shapes.resolve_padding`).
* Convolutions and max pooling pad with zeros and with minus infinity respectively (never
  zero-padding before a max); average pooling divides by the number of *real* (unpadded) cells
  when ``count_padding`` is false (TensorFlow "same"), by the full window when true.
* Node order is weight order. Both backends list a network's weights in graph order: PyTorch
  registers one module per node in this order, and Keras, which orders layers by their depth,
  receives each add's operands in graph order, so that equally deep layers follow it too. A
  residual block lists its branch before its shortcut unless the spec says otherwise.
* The output is named explicitly (``Graph.output``), never inferred from the last node. A
  backbone has several named outputs (``Graph.outputs``: output name -> node, in the order the
  spec lists them); ``output`` is then the deepest of them.
* Batch normalization's ``decay`` is the weight of the old running statistic
  (``running = decay * running + (1 - decay) * batch``; PyTorch's ``momentum`` is ``1 - decay``).
  ``running_variance`` says whether the running variance accumulates the biased batch variance
  (Keras) or the unbiased one (PyTorch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from .diagnostics import KeyPath

Padding4 = tuple[int, int, int, int]  # top, bottom, left, right
Pair = tuple[int, int]  # (height, width)

ActivationFunction = Literal["relu", "relu6", "silu", "gelu", "sigmoid", "tanh", "softmax"]
InitializerName = Literal[
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_normal_fan_out",
    "glorot_uniform",
    "glorot_normal",
    "lecun_normal",
    "torch_default",
    "zeros",
]


@dataclass(frozen=True)
class Node:
    name: str
    inputs: tuple[str, ...]
    origin: KeyPath = field(default=(), compare=False)

    @property
    def op(self) -> str:
        """Short operation name used in summaries and canonical forms (``conv``, ``add``...)."""
        return OP_NAMES[type(self)]

    def attributes(self) -> dict[str, object]:
        """The node's own settings (everything but name, inputs and origin)."""
        skip = {"name", "inputs", "origin"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass(frozen=True)
class Input(Node):
    shape: tuple[int, int, int] = (0, 0, 0)  # (height, width, channels)


@dataclass(frozen=True)
class Conv2D(Node):
    filters: int = 0
    kernel_size: Pair = (1, 1)
    strides: Pair = (1, 1)
    padding: Padding4 = (0, 0, 0, 0)
    groups: int = 1
    use_bias: bool = False
    initializer: InitializerName = "he_normal"
    kernel_l2: float = 0.0


@dataclass(frozen=True)
class BatchNorm(Node):
    decay: float = 0.9
    epsilon: float = 1e-5
    running_variance: Literal["biased", "unbiased"] = "biased"
    center: bool = True  # learn beta
    scale: bool = True  # learn gamma
    zero_init: bool = False  # gamma starts at 0 (zero-init of the last norm in a block)


@dataclass(frozen=True)
class Activation(Node):
    function: ActivationFunction = "relu"


@dataclass(frozen=True)
class ZeroPad(Node):
    padding: Padding4 = (0, 0, 0, 0)


@dataclass(frozen=True)
class MaxPool(Node):
    pool_size: Pair = (2, 2)
    strides: Pair = (2, 2)
    padding: Padding4 = (0, 0, 0, 0)  # padded cells never win: they hold -inf


@dataclass(frozen=True)
class AvgPool(Node):
    pool_size: Pair = (2, 2)
    strides: Pair = (2, 2)
    padding: Padding4 = (0, 0, 0, 0)
    count_padding: bool = False  # False: divide by the number of real cells (TensorFlow "same")


@dataclass(frozen=True)
class GlobalAvgPool(Node):
    keepdims: bool = False  # True keeps a 1x1 map (squeeze-and-excitation)


@dataclass(frozen=True)
class Flatten(Node):
    """Flattens a feature map in the backend's native order: (h, w, c) for NHWC frameworks,
    (c, h, w) for NCHW ones. The neutral weight layout (:mod:`resnet_spec.weights`) orders the
    rows of the dense layer after a flatten as (h, w, c); a channels-first backend permutes them
    when weights move, and reports flatten outputs in (h, w, c) order from ``node_outputs``."""


@dataclass(frozen=True)
class Dense(Node):
    units: int = 0
    use_bias: bool = True
    initializer: InitializerName = "glorot_uniform"
    kernel_l2: float = 0.0


@dataclass(frozen=True)
class Dropout(Node):
    rate: float = 0.0


@dataclass(frozen=True)
class DropPath(Node):
    """Stochastic depth: drops the whole residual branch per sample with probability ``rate``
    during training and scales kept samples by 1 / (1 - rate); identity at inference."""

    rate: float = 0.0


@dataclass(frozen=True)
class Add(Node):
    """Residual merge: inputs[0] is the residual branch, inputs[1] the shortcut (whichever of
    them the graph lists first; see "node order is weight order" above)."""


@dataclass(frozen=True)
class Scale(Node):
    """Channel-wise multiply (squeeze-and-excitation): inputs[0] (H, W, C) times inputs[1] (1, 1, C)."""


@dataclass(frozen=True)
class ChannelPadShortcut(Node):
    """The paper's option A: take every ``stride``-th row and column (``x[::s, ::s]``), then pad
    channels with zeros, ``pad_before`` in front and ``pad_after`` behind."""

    stride: int = 1
    pad_before: int = 0
    pad_after: int = 0


N = TypeVar("N", bound=Node)


def evolve(node: N, **changes: Any) -> N:
    """A copy of ``node`` with some of its fields changed.

    ``dataclasses.replace`` re-runs ``__init__`` and ``copy.copy`` goes through ``__reduce_ex__``;
    with thousands of nodes per validation either dominates. Nodes are frozen dataclasses without
    ``__slots__``, so a copy of the instance dict with the changes applied is the same value."""
    copy = object.__new__(type(node))
    copy.__dict__.update(node.__dict__, **changes)
    return copy


OP_NAMES: dict[type[Node], str] = {
    Input: "input",
    Conv2D: "conv",
    BatchNorm: "batch_norm",
    Activation: "activation",
    ZeroPad: "zero_pad",
    MaxPool: "max_pool",
    AvgPool: "avg_pool",
    GlobalAvgPool: "global_avg_pool",
    Flatten: "flatten",
    Dense: "dense",
    Dropout: "dropout",
    DropPath: "drop_path",
    Add: "add",
    Scale: "scale",
    ChannelPadShortcut: "channel_pad_shortcut",
}


@dataclass
class Graph:
    """Nodes in topological order; ``output`` names the node whose value the model returns (set
    by whoever builds the graph, with :meth:`set_output`), or ``outputs`` a backbone's named
    outputs (:meth:`set_outputs`)."""

    nodes: list[Node] = field(default_factory=list)
    output: str = ""
    outputs: dict[str, str] = field(default_factory=dict)  # a backbone's: output name -> node; else empty

    def __post_init__(self) -> None:
        self._by_name: dict[str, Node] = {n.name: n for n in self.nodes}

    def add(self, node: Node) -> str:
        name, by_name = node.name, self._by_name  # locals: called once per node of deep nets
        if name in by_name:
            raise ValueError(f"duplicate node name {name!r}")  # an expander bug, not user error
        for source in node.inputs:
            if source not in by_name:
                raise ValueError(f"node {name!r} reads unknown node {source!r}")
        self.nodes.append(node)
        by_name[name] = node
        return name

    def replace(self, node: Node) -> None:
        """Put ``node`` in the place of the node of the same name (same inputs: the structure
        stays as it was). Looked for from the end: callers replace what they just added."""
        old = self._by_name[node.name]
        if old.inputs != node.inputs:
            raise ValueError(f"replacing {node.name!r} must keep its inputs")
        index = next(i for i in range(len(self.nodes) - 1, -1, -1) if self.nodes[i] is old)
        self.nodes[index] = self._by_name[node.name] = node

    def set_output(self, name: str) -> None:
        if name not in self._by_name:
            raise ValueError(f"the output {name!r} is not a node of the graph")
        self.output = name

    def set_outputs(self, named: dict[str, str]) -> None:
        """A backbone's outputs, name -> node; ``output`` becomes the one latest in graph order."""
        for node in named.values():
            if node not in self._by_name:
                raise ValueError(f"the output {node!r} is not a node of the graph")
        if not named:
            raise ValueError("a graph needs at least one output")
        order = {n.name: i for i, n in enumerate(self.nodes)}
        self.outputs = dict(named)
        self.output = max(named.values(), key=order.__getitem__)

    def named_outputs(self) -> dict[str, str]:
        """Every output, name -> node: a backbone's ``outputs``, else ``{output: output}``."""
        return dict(self.outputs) if self.outputs else {self.output: self.output}

    @property
    def output_nodes(self) -> frozenset[str]:
        return frozenset(self.outputs.values()) if self.outputs else frozenset((self.output,))

    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def input(self) -> Input:
        first = self.nodes[0]
        assert isinstance(first, Input)
        return first

    def consumers(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for name in node.inputs:
                users[name].append(node.name)
        return users
