"""Compile a resolved :class:`~resnet_spec.graph.Graph` into a ``torch.nn.Module``.

Layout: the model takes **NCHW** tensors. The spec's input (H, W, C) becomes (N, C, H, W), and
every (H, W, C) shape in the analysis is (N, C, H, W) here. ``model.to(memory_format=
torch.channels_last)`` works (that only changes strides, never the logical layout).

Names follow the graph: node ``stage2.block0.conv1`` is ``model.stage2.block0.conv1`` (nested
containers), so its weight is ``stage2.block0.conv1.weight`` in the state dict, and tensors come
in graph order. Nodes without weights (activations, adds...) are modules too, so hooks and
``print(model)`` show the whole network.

``forward`` is a static walk over a precomputed list of steps (no data-dependent control flow),
which ``torch.compile`` and ``torch.export`` trace into straight-line code. Each intermediate
value is dropped right after its last reader, as hand-written code would let it go. Like
torchvision, a ReLU after a batch norm or an add, and an add after a batch norm, work in place
where nothing else reads their input (so a forward hook that keeps a batch norm's output may see
it overwritten later; ``capture`` and ``node_outputs`` are not affected).

Padding was resolved for the spec's input size. Other sizes run (with that padding), except
through an average pooling with asymmetric padding that divides by its real cells: its divisor
map is precomputed for the spec's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from resnet_spec import graph as g

from . import layers as L
from .init import initialize

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture

Shape = tuple[int, ...]


class Group(nn.Module):
    """A container for the modules that share a name prefix (``stage2``, ``stage2.block0``)."""


class ResNet(nn.Module):
    """The compiled network; see the module docstring for layout and naming."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        graph = arch.graph
        self.input_name = graph.input.name
        self.output_name = graph.output
        self.input_shape = graph.input.shape  # (H, W, C): the NCHW input is (N, C, H, W)
        self.arch_hash = arch.hash
        # (node name, its submodule path, input names, names whose last reader this is). Modules
        # are looked up by path on every call rather than held here, so that copies which swap
        # submodules (DataParallel's replicas) run their own.
        self._steps: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = []
        readers = graph.consumers()
        for node in graph:
            if isinstance(node, g.Input):
                continue
            module = make_module(node, [arch.analysis.info[name].output_shape for name in node.inputs])
            if _may_overwrite(node, graph, readers):
                module.inplace = True  # type: ignore[assignment]
            _attach(self, node.name, module)
            release = tuple(sorted({i for i in node.inputs if readers[i][-1] == node.name and i != self.output_name}))
            self._steps.append((node.name, tuple(node.name.split(".")), node.inputs, release))

    def _module(self, path: tuple[str, ...]) -> nn.Module:
        module: nn.Module = self
        for part in path:
            module = getattr(module, part)
        return module

    def forward(self, x: Tensor) -> Tensor:
        values = {self.input_name: x}
        for name, path, inputs, release in self._steps:
            values[name] = self._module(path)(*[values[i] for i in inputs])
            for dead in release:
                del values[dead]
        return values[self.output_name]

    def capture(self, x: Tensor) -> dict[str, Tensor]:
        """The output of every graph node (the same walk as ``forward``, keeping everything:
        a module that works in place gets a copy of its first input, which stays as it was)."""
        values = {self.input_name: x}
        for name, path, inputs, _ in self._steps:
            module = self._module(path)
            args = [values[i] for i in inputs]
            if getattr(module, "inplace", False):
                args[0] = args[0].clone()
            values[name] = module(*args)
        return values


def _may_overwrite(node: g.Node, graph: g.Graph, readers: dict[str, list[str]]) -> bool:
    """Whether ``node`` may write its result into its first input, saving an allocation as
    torchvision's ``ReLU(inplace=True)`` and ``out += identity`` do.

    Only where it is safe for every reader and for autograd: nothing else reads that input, it
    is not the model's output, and it is a fresh tensor that its producer (batch norm or add)
    does not keep for its backward pass. ReLU / ReLU6 backward needs only their own output."""
    first = node.inputs[0]
    if readers[first] != [node.name] or first == graph.output:
        return False
    producer = graph[first]
    if isinstance(node, g.Activation):
        return node.function in ("relu", "relu6") and isinstance(producer, (g.BatchNorm, g.Add))
    return isinstance(node, g.Add) and isinstance(producer, g.BatchNorm)


def build_module(arch: Architecture) -> ResNet:
    return ResNet(arch)


def _attach(root: nn.Module, name: str, module: nn.Module) -> None:
    *parents, leaf = name.split(".")
    parent = root
    for part in parents:
        child = parent._modules.get(part)
        parent = child if child is not None else _add_child(parent, part, Group())
    _add_child(parent, leaf, module)


def _add_child(parent: nn.Module, name: str, module: nn.Module) -> nn.Module:
    # Straight into _modules: add_module's own check (hasattr on a missing name, which goes
    # through Module.__getattr__'s exception) costs as much as building the small modules.
    if name in parent._modules or hasattr(type(parent), name) or name in parent.__dict__:
        raise ValueError(f"graph name {name!r} clashes with an existing attribute")  # an expander bug
    parent._modules[name] = module
    return module


# ---------------------------------------------------------------------- one module per node kind


def _conv(node: g.Conv2D, shape: Shape) -> nn.Module:
    args = (shape[-1], node.filters, node.kernel_size)
    common: dict[str, Any] = {"stride": node.strides, "groups": node.groups, "bias": node.use_bias}
    conv: nn.Conv2d
    if L.symmetric(node.padding):
        conv = L.Conv2d(*args, padding=(node.padding[0], node.padding[2]), **common)
    else:
        conv = L.PaddedConv2d(*args, pad=node.padding, **common)
    initialize(conv, node.initializer)
    return conv


def _norm(node: g.BatchNorm, shape: Shape) -> nn.Module:
    bn = L.BatchNorm(
        shape[-1], eps=node.epsilon, momentum=1.0 - node.decay, center=node.center, scale=node.scale,
        biased_running_var=node.running_variance == "biased",
    )  # fmt: skip
    if node.zero_init and bn.weight is not None:
        nn.init.zeros_(bn.weight)
    return bn


def _max_pool(node: g.MaxPool, shape: Shape) -> nn.Module:
    if L.native_pool_padding(node.padding, node.pool_size):
        return nn.MaxPool2d(node.pool_size, node.strides, padding=(node.padding[0], node.padding[2]))
    return L.PaddedMaxPool2d(node.pool_size, node.strides, node.padding)


def _avg_pool(node: g.AvgPool, shape: Shape) -> nn.Module:
    # Native average pooling is exact for symmetric padding: count_include_pad=False divides by
    # the real cells (TensorFlow "same"), True by the whole window.
    if L.native_pool_padding(node.padding, node.pool_size):
        padding = (node.padding[0], node.padding[2])
        return nn.AvgPool2d(node.pool_size, node.strides, padding=padding, count_include_pad=node.count_padding)
    return L.PaddedAvgPool2d(node.pool_size, node.strides, node.padding, node.count_padding, (shape[0], shape[1]))


def _dense(node: g.Dense, shape: Shape) -> nn.Module:
    dense = L.Linear(shape[0], node.units, bias=node.use_bias)
    initialize(dense, node.initializer)
    return dense


_FACTORIES: dict[type[g.Node], Callable[..., nn.Module]] = {
    g.Conv2D: _conv,
    g.BatchNorm: _norm,
    g.Activation: lambda node, *shapes: L.ACTIVATIONS[node.function](),
    g.ZeroPad: lambda node, shape: nn.ZeroPad2d(L.pad_arg(node.padding)),
    g.MaxPool: _max_pool,
    g.AvgPool: _avg_pool,
    g.GlobalAvgPool: lambda node, shape: L.GlobalAvgPool(node.keepdims),
    g.Flatten: lambda node, shape: nn.Flatten(),  # NCHW order (c, h, w); see the Flatten node's docs
    g.Dense: _dense,
    g.Dropout: lambda node, shape: nn.Dropout(node.rate),
    g.DropPath: lambda node, shape: L.DropPath(node.rate),
    g.Add: lambda node, *shapes: L.Add(),
    g.Scale: lambda node, *shapes: L.Scale(),
    g.ChannelPadShortcut: lambda node, shape: L.ChannelPadShortcut(node.stride, node.pad_before, node.pad_after),
}


def make_module(node: g.Node, shapes: list[Shape]) -> nn.Module:
    """The module for one resolved node, given its input shapes ((H, W, C) or (C,))."""
    factory = _FACTORIES.get(type(node))
    if factory is None:
        raise NotImplementedError(f"the torch backend has no module for {type(node).__name__} ({node.name})")
    return factory(node, *shapes)
