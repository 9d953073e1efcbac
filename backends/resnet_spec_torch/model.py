"""Compile a resolved :class:`~resnet_spec.graph.Graph` into a ``torch.nn.Module``.

Layout: the model takes **NCHW** tensors. The spec's input (H, W, C) becomes (N, C, H, W), and
every (H, W, C) shape in the analysis is (N, C, H, W) here. ``model.to(memory_format=
torch.channels_last)`` works (that only changes strides, never the logical layout).

Names follow the graph: node ``stage2.block0.conv1`` is ``model.stage2.block0.conv1`` (nested
containers), so its weight is ``stage2.block0.conv1.weight`` in the state dict, and tensors come
in graph order. Nodes without weights (activations, adds...) are modules too, so hooks and
``print(model)`` show the whole network. The containers (``stem``, ``stage2``,
``stage2.block0``, ``head``) are :class:`Group` modules whose ``forward`` runs their nodes, so
``model.stage3(x)`` works and hooks on stages and blocks fire.

A classifier returns its logits (or softmax); a backbone (``head.features``) a dict, output name
-> tensor, in the spec's order.

``forward`` is a static walk over precomputed steps (no data-dependent control flow), which
``torch.compile`` and ``torch.export`` trace into straight-line code: the root walks its
children, each group its own. :func:`walk` is the backend's only walk over the graph. Each intermediate
value is dropped right after its last reader, as hand-written code would let it go. Like
torchvision, a ReLU after a batch norm or an add, and an add after a batch norm, work in place
where nothing else reads their input (so a forward hook that keeps a batch norm's output may see
it overwritten later; ``capture`` and ``node_outputs`` are not affected).

Padding was resolved for the spec's input size. Other sizes run (with that padding), except
through an average pooling with asymmetric padding that divides by its real cells: its divisor
map is precomputed for the spec's size.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from resnet_spec import graph as g

from . import layers as L
from .init import initialize

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture

Shape = tuple[int, ...]
Step = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""(value name, module path under the walk's owner, names it reads, names whose last reader it
is). A leaf step's value name is its node's; a group step's is the group's local name (the
values it makes are the group's ``output_names``)."""


class _Everything:
    """``keep`` for a walk that keeps every value (and so must not let a module overwrite one)."""

    def __contains__(self, name: object) -> bool:
        return True


EVERYTHING = _Everything()


def walk(owner: nn.Module, steps: Sequence[Step], values: dict[str, Tensor], *,
         emit: Callable[[str, Tensor], None] | None = None, keep: Container[str] = frozenset(),
         leaf: Tensor | None = None) -> dict[str, Tensor]:  # fmt: skip
    """The backend's one walk over the graph: ``forward``, every group's ``forward``,
    ``capture``, ``node_outputs``, the parity probe and the trainer's logits all run through
    it. Runs ``steps`` on ``values`` (name -> tensor), dropping each value after its last reader
    unless ``keep`` holds it.

    ``emit`` sees every node's output before a later module can overwrite it in place; with it,
    a group step is walked into (its own steps on the same values) instead of called, so every
    node is seen. The modules run, their order and their inputs are the same either way, so the
    values are too. An in-place module gets a copy of its first input when that input is
    ``leaf`` (a segment's input, which autograd must keep intact) or when everything is kept."""
    for name, path, inputs, release in steps:
        module = _lookup(owner, path)
        if isinstance(module, Group):
            if emit is not None:
                walk(module, module._steps, values, emit=emit, keep=keep, leaf=leaf)
            else:
                out = module(*[values[i] for i in inputs])
                values.update(zip(module.output_names, (out,) if len(module.output_names) == 1 else out))
        else:
            args = [values[i] for i in inputs]
            if getattr(module, "inplace", False) and (keep is EVERYTHING or (leaf is not None and args[0] is leaf)):
                args[0] = args[0].clone()
            values[name] = module(*args)
            if emit is not None:
                emit(name, values[name])
        for dead in release:
            if dead not in keep:
                values.pop(dead, None)
    return values


def _lookup(owner: nn.Module, path: tuple[str, ...]) -> nn.Module:
    # Looked up by path on every call rather than held in the steps, so that copies which swap
    # submodules (DataParallel's replicas) run their own.
    module = owner
    for part in path:
        child = module._modules[part]
        if child is None:  # pragma: no cover - the model never registers None
            raise KeyError(f"no module {part!r}")
        module = child
    return module


class Group(nn.Module):
    """The modules that share a name prefix (``stem``, ``stage2``, ``stage2.block0``, ``head``),
    as one module whose ``forward`` runs them: ``model.stage3(x)`` works, and forward hooks on
    stages and blocks fire. It takes the values its nodes read from outside (``input_names``, in
    the order first read) and returns the ones read outside or returned by the model
    (``output_names``): one tensor, or a tuple when there are several."""

    def __init__(self) -> None:
        super().__init__()
        self.input_names: tuple[str, ...] = ()
        self.output_names: tuple[str, ...] = ()
        self._steps: list[Step] = []

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"this group takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}), "
                            f"got {len(inputs)}")  # fmt: skip
        values = walk(self, self._steps, dict(zip(self.input_names, inputs)))
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def extra_repr(self) -> str:
        return f"inputs={list(self.input_names)}, outputs={list(self.output_names)}"


class ResNet(nn.Module):
    """The compiled network; see the module docstring for layout, naming and outputs."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        graph = arch.graph
        self.input_name = graph.input.name
        self.output_name = graph.output
        self.output_names = graph.named_outputs()  # a backbone's: output name -> node
        self.returns_dict = bool(graph.outputs)
        self.input_shape = graph.input.shape  # (H, W, C): the NCHW input is (N, C, H, W)
        self.arch_hash = arch.hash
        readers = graph.consumers()
        outputs = graph.output_nodes
        # Every node in graph order, each from the root: what node_outputs and the parity probe walk.
        self._steps: list[Step] = []
        for node in graph:
            if isinstance(node, g.Input):
                continue
            module = make_module(node, [arch.analysis.info[name].output_shape for name in node.inputs])
            if _may_overwrite(node, graph, readers):
                module.inplace = True  # type: ignore[assignment]
            _attach(self, node.name, module)
            release = tuple(sorted({i for i in node.inputs if readers[i][-1] == node.name and i not in outputs}))
            self._steps.append((node.name, tuple(node.name.split(".")), node.inputs, release))
        self._plan = _plan_groups(self, graph, outputs)  # the root's children: what forward walks
        classifier = graph._by_name.get("head.classifier")
        self._classifier = None  # (input features, bias, initializer): what reset_classifier draws anew
        if isinstance(classifier, g.Dense):
            features = arch.analysis.info[classifier.inputs[0]].output_shape[-1]
            self._classifier = (features, classifier.use_bias, classifier.initializer)

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """The logits (or softmax) of a classifier; a backbone's feature maps as a dict, output
        name -> tensor, in the order the spec lists them."""
        values = walk(self, self._plan, {self.input_name: x})
        if self.returns_dict:
            return {name: values[node] for name, node in self.output_names.items()}
        return values[self.output_name]

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature map the head reads (timm's ``forward_features``: before pooling and the
        classifier); a backbone's deepest output."""
        head = next((i for i, step in enumerate(self._plan) if step[1] == ("head",)), None)
        if head is None:
            return walk(self, self._plan, {self.input_name: x})[self.output_name]
        group = self._modules["head"]
        assert isinstance(group, Group)
        if len(group.input_names) != 1:  # pragma: no cover - expanded heads read one map
            raise TypeError(f"the head reads {len(group.input_names)} values, not one feature map")
        return walk(self, self._plan[:head], {self.input_name: x})[group.input_names[0]]

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier for ``num_classes`` classes, drawn with the spec's initializer (timm's
        ``reset_classifier``; 0 gives ``nn.Identity``: the pooled features). The model no longer
        matches its spec: saving it asks for a spec with the new ``classes``."""
        if self._classifier is None:
            raise ValueError("this model has no classifier to reset (a backbone returns feature maps: "
                             "build a spec with `classes` and a classifier head instead)")  # fmt: skip
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        features, bias, initializer = self._classifier
        head, old = self._modules["head"], self.get_submodule("head.classifier")
        new: nn.Module = nn.Identity()
        if num_classes:
            new = L.Linear(features, num_classes, bias=bias)
            initialize(new, initializer)
            reference = next(iter(self.parameters()), None)
            if reference is not None:
                new.to(device=reference.device, dtype=reference.dtype)
        assert head is not None and old is not None
        head._modules["classifier"] = new
        self.arch_hash = f"{self.arch_hash.split(' ')[0]} with reset_classifier({num_classes})"

    def capture(self, x: Tensor) -> dict[str, Tensor]:
        """The output of every graph node (the walk of ``forward``, keeping everything: a module
        that works in place gets a copy of its first input, which stays as it was)."""
        return walk(self, self._steps, {self.input_name: x}, keep=EVERYTHING)

    def logits(self, x: Tensor) -> Tensor:
        """The network up to ``head.classifier`` (the training loss's input)."""
        last = next(i for i, step in enumerate(self._steps) if step[0] == "head.classifier")
        return walk(self, self._steps[: last + 1], {self.input_name: x})["head.classifier"]


def _plan_groups(root: nn.Module, graph: g.Graph, outputs: frozenset[str]) -> list[Step]:
    """Give every group its inputs, outputs and steps; return the root's steps. A group's nodes
    must be consecutive in graph order (the expander writes them so) for its walk to run them
    in that order."""
    readers = graph.consumers()
    owner_steps: dict[str, list[Step]] = {"": []}
    members: dict[str, set[str]] = {}
    last_group: dict[str, int] = {}
    for position, node in enumerate(graph):
        if isinstance(node, g.Input):
            continue
        parts = node.name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix in last_group and last_group[prefix] != position - 1:
                raise ValueError(f"the nodes of {prefix!r} are not consecutive in graph order")  # an expander bug
            last_group[prefix] = position
            members.setdefault(prefix, set()).add(node.name)
            if prefix not in owner_steps:
                owner_steps[prefix] = []
                owner_steps[".".join(parts[: depth - 1])].append((prefix, (parts[depth - 1],), (), ()))
        owner_steps[".".join(parts[:-1])].append((node.name, (parts[-1],), node.inputs, ()))
    for prefix in sorted(p for p in owner_steps if p):
        group, inside = root.get_submodule(prefix), members[prefix]
        assert isinstance(group, Group)
        ordered = [n for n in graph.nodes if n.name in inside]
        group.input_names = tuple(dict.fromkeys(i for n in ordered for i in n.inputs if i not in inside))
        group.output_names = tuple(n.name for n in ordered
                                   if n.name in outputs or any(r not in inside for r in readers[n.name]))  # fmt: skip
    for prefix, steps in owner_steps.items():
        resolved = _resolve_steps(root, prefix, steps, readers, outputs)
        owner = root.get_submodule(prefix) if prefix else None
        if isinstance(owner, Group):
            owner._steps = resolved
        else:
            plan = resolved
    return plan


def _resolve_steps(root: nn.Module, prefix: str, steps: list[Step], readers: dict[str, list[str]],
                   outputs: frozenset[str]) -> list[Step]:  # fmt: skip
    """Fill in each step's inputs (a group's ``input_names``) and what to drop after it: values
    made at this level whose last reader at this level it is, unless the level's owner returns
    them (a group's inputs belong to the level above, which drops them after the group)."""
    group = root.get_submodule(prefix) if prefix else None
    returned = set(group.output_names) | set(group.input_names) if isinstance(group, Group) else set(outputs)
    filled = []
    for name, path, inputs, _ in steps:
        module = root.get_submodule(f"{prefix}.{path[0]}" if prefix else path[0])
        filled.append((name, path, module.input_names if isinstance(module, Group) else inputs))
    last: dict[str, int] = {}
    for index, (_, _, inputs) in enumerate(filled):
        for value in inputs:
            last[value] = index
    resolved: list[Step] = []
    for index, (name, path, inputs) in enumerate(filled):
        release = tuple(sorted({v for v in inputs if last[v] == index and v not in returned}))
        resolved.append((name, path, tuple(inputs), release))
    return resolved


def _may_overwrite(node: g.Node, graph: g.Graph, readers: dict[str, list[str]]) -> bool:
    """Whether ``node`` may write its result into its first input, saving an allocation as
    torchvision's ``ReLU(inplace=True)`` and ``out += identity`` do.

    Only where it is safe for every reader and for autograd: nothing else reads that input, it
    is not an output of the model, and it is a fresh tensor that its producer (batch norm or
    add) does not keep for its backward pass. ReLU / ReLU6 backward needs only their own output."""
    first = node.inputs[0]
    if readers[first] != [node.name] or first in graph.output_nodes:
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
