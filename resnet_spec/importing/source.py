"""What an imported file or model is turned into before matching: framework-free.

A source is a set of **units**, one per weighted layer (a convolution, a batch norm, a dense
layer), each holding its tensors in the source framework's own layout. Two kinds of source:

* :class:`GraphSource`: the units plus the dataflow between every operation (an ``nn.Module``
  traced on one forward, a functional ``keras.Model``, a resnet-spec model file's own graph);
* :class:`NamedSource`: the units and their names only (a ``state_dict``, a ``.safetensors`` or
  Keras ``.h5`` file). The names' hierarchy (``layer2.0.downsample.0``,
  ``conv2_block1_0_conv``) is the only structure such a file has.

Every unit describes itself by a **signature** (kind and neutral shapes) that the matcher
compares with the spec's nodes. A 1x1 convolution without groups and a dense layer are both a
``linear`` map, so a classifier written as a 1x1 conv (timm's ResNetV2 ``head.fc``) or a
squeeze-and-excitation written with ``nn.Linear`` still finds its node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Layout = Literal["torch", "neutral"]  # neutral = Keras' own (HWIO kernels, (in, out) dense)
Kind = Literal["conv", "norm", "dense"]

# Neutral batch-norm keys and the order their signature lists them in.
NORM_KEYS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclass(frozen=True)
class SourceTensor:
    name: str  # the source's own name: "layer2.0.downsample.0.weight", "conv2_block1_0_conv/kernel"
    value: np.ndarray  # in the source's layout, already checked (finite floating point)

    def describe(self) -> str:
        return f"{self.name} {tuple(self.value.shape)}"


@dataclass
class Unit:
    """One weighted layer of the source. ``tensors`` maps neutral keys (``kernel``, ``bias``,
    ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``) to the source's tensors."""

    kind: Kind
    label: str  # the layer's name in the source ("layer2.0.downsample.0")
    path: tuple[str, ...]  # that name split into its hierarchy
    tensors: dict[str, SourceTensor]
    layout: Layout
    strides: tuple[int, int] | None = None  # known for graph sources only
    order: int | None = None  # position in the file, where the file keeps its writer's order
    groups: int | None = None
    epsilon: float | None = None

    def signature(self) -> tuple[object, ...]:
        return signature(self.kind, {k: self.neutral_shape(k) for k in self.tensors})

    def neutral_shape(self, key: str) -> tuple[int, ...]:
        shape = tuple(int(n) for n in self.tensors[key].value.shape)
        if key != "kernel" or self.layout == "neutral":
            return shape
        if self.kind == "conv":  # (out, in / groups, kh, kw) -> (kh, kw, in / groups, out)
            return (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape
        return shape[::-1]  # dense (out, in) -> (in, out)

    def describe(self) -> str:
        return ", ".join(t.describe() for t in self.tensors.values())


def signature(kind: str, shapes: dict[str, tuple[int, ...]]) -> tuple[object, ...]:
    """What must agree between a spec node and a source unit for one to take the other's weights."""
    if kind in ("conv", "dense"):
        kernel = shapes.get("kernel", ())
        bias = "bias" in shapes
        if kind == "dense" and len(kernel) == 2:
            return ("linear", kernel[0], kernel[1], bias)
        if len(kernel) == 4 and kernel[:2] == (1, 1):
            return ("linear", kernel[2], kernel[3], bias)  # groups are not visible in a kernel's shape
        return ("conv", *kernel, bias)
    channels = next((shapes[k][0] for k in NORM_KEYS if shapes.get(k)), 0)
    return ("norm", channels, "gamma" in shapes, "beta" in shapes)


def show_signature(sig: tuple[object, ...]) -> str:
    kind = sig[0]
    if kind == "linear":
        return f"a 1x1 conv or dense layer {sig[1]} -> {sig[2]} {'with' if sig[3] else 'without'} bias"
    if kind == "conv":
        kh, kw, cin, cout, bias = sig[1:]
        return f"a {kh}x{kw} conv {cin} -> {cout} {'with' if bias else 'without'} bias"
    return f"a batch norm over {sig[1]} channels"


@dataclass
class GraphOp:
    """One operation of a dataflow graph, inputs by index (ops are in topological order)."""

    kind: Literal["input", "conv", "norm", "dense", "add", "mul", "other"]
    inputs: tuple[int, ...]
    label: str
    unit: object = None  # a Unit (sources) or a target slot (the spec's own graph)
    ordered: bool = False  # add / mul whose inputs are known to be (branch, shortcut) / (x, gate)


@dataclass
class GraphSource:
    description: str
    ops: list[GraphOp]
    output: int
    units: list[Unit] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # tensors the forward never read


@dataclass
class NamedSource:
    description: str
    units: list[Unit]
    ignored: list[str] = field(default_factory=list)  # bookkeeping tensors (num_batches_tracked)


Source = GraphSource | NamedSource

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: tuple[str, ...]) -> tuple[tuple[object, ...], ...]:
    """Sort key comparing numbers in names as numbers: ``block2`` before ``block10``. Every part
    alternates text and number, so two keys never compare a string with an integer."""
    return tuple(tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(part))) for part in path)


def split_name(name: str, separators: str) -> tuple[str, ...]:
    return tuple(p for p in re.split(f"[{re.escape(separators)}]", name) if p)
