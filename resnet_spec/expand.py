"""Expand a typed spec into the backend-neutral :class:`~resnet_spec.graph.Graph`.

The expander resolves the settings cascade, the depth shorthand and every block kind into
primitive nodes with deterministic names. Block kinds are objects of :mod:`resnet_spec.blocks`
(one per kind, registered in :mod:`resnet_spec.blocks.registry`); this module walks the stages,
asks each block's kind to build it, and writes the stem and the head. Paddings are resolved as
nodes are added (:class:`~resnet_spec.blocks.builder.NetworkBuilder` knows each input's size),
and the graph's output is set at the end.

Naming: ``stem.conv1``, ``stage2.block0.conv1``, ``stage2.block0.shortcut.conv``, ``head.classifier``.
Stages count from 1 and blocks from 0, as torchvision's ``layer2.0.conv1`` does.
"""

from __future__ import annotations

from typing import Any

from . import backbone, budget
from . import graph as g
from .blocks import applicability, residual
from .blocks.builder import BUILTIN_SETTINGS, BlockBuilder, ExpansionError, NetworkBuilder, Template
from .blocks.layer_list import LayerList
from .blocks.registry import kind_of, view
from .depth import resolve as resolve_depth
from .diagnostics import Diagnostic
from .spec import ResNetSpec, StageOptions

__all__ = ["ExpansionError", "drop_rates", "expand"]


def expand(spec: ResNetSpec) -> tuple[g.Graph | None, list[Diagnostic]]:
    problems = applicability.check(spec) + backbone.check(spec)
    if problems:
        return None, problems
    depth, problems = resolve_depth(spec)
    if depth is None:
        return None, problems
    problems = budget.check(spec, depth.block_counts) or _schedule_problems(spec, depth.block_counts)
    if problems:
        return None, problems
    try:
        return _Expander(spec).build(depth.block_counts), []
    except ExpansionError as error:
        return None, error.diagnostics


def drop_rates(spec: ResNetSpec, counts: tuple[int, ...]) -> list[list[float]]:
    """Each block's drop-path rate: its stage's ``stochastic_depth_rate``, or the network's
    schedule (timm's ``drop_path_rate * i / (N - 1)`` for block i of N, counted over all stages)."""
    network = spec.stochastic_depth
    if network is None:
        return [[stage.stochastic_depth_rate] * n for stage, n in zip(spec.stages, counts)]
    total, rates, index = sum(counts), [], 0
    for n in counts:
        if network.schedule == "constant":
            rates.append([network.rate] * n)
        else:
            rates.append([network.rate * (index + b) / (total - 1) for b in range(n)])
        index += n
    return rates


def _schedule_problems(spec: ResNetSpec, counts: tuple[int, ...]) -> list[Diagnostic]:
    network = spec.stochastic_depth
    if network is None or network.schedule != "linear" or sum(counts) > 1:
        return []
    return [Diagnostic("RS107", "a linear stochastic-depth schedule over one block gives it rate 0",
                       hint="use `schedule: constant`, or a stage's `stochastic_depth_rate`",
                       key_path=("stochastic_depth", "schedule"))]  # fmt: skip


class _Expander:
    def __init__(self, spec: ResNetSpec):
        self.spec = spec
        self.net = NetworkBuilder(spec, BUILTIN_SETTINGS.over(spec.defaults))

    def build(self, counts: tuple[int, ...]) -> g.Graph:
        spec, net = self.spec, self.net
        x = net.add(g.Input("input", (), ("input",), shape=(spec.input.height, spec.input.width, spec.input.channels)))
        x, channels = LayerList(net, "stem", net.settings).emit(x, spec.stem, ("stem",), spec.input.channels)
        places = {"stem": x} if spec.stem else {}  # what a backbone's features may name
        for index, (stage, rates) in enumerate(zip(spec.stages, drop_rates(spec, counts))):
            x, channels = self._stage(index, stage, rates, x, channels)
            places[f"stage{index + 1}"] = x
        if spec.head.features is None:
            net.graph.set_output(self._head(x, channels))
            return net.graph
        outputs, problems = backbone.resolve(spec, net.graph, places)
        if problems:
            raise ExpansionError(problems)
        net.graph.set_outputs(outputs)
        return net.graph

    def _stage(self, index: int, stage: StageOptions, rates: list[float], x: str, channels: int) -> tuple[str, int]:
        net, settings = self.net, self.net.settings.over(stage.defaults)
        strided = 0 if stage.stride_block == "first" else len(rates) - 1
        template: Template | None = None
        template_key: tuple[Any, ...] = ()
        for b, rate in enumerate(rates):
            name = stage.first_block if b == 0 and stage.first_block else stage.block
            stride = stage.stride if b == strided else 1
            prefix = f"stage{index + 1}.block{b}"
            # Blocks that agree in all of this are the same nodes up to names and drop rate.
            key = (name, channels, net.shape(x), stride, b == strided, b == 0, rate > 0)
            if template is not None and key == template_key:
                x = net.repeat(template, prefix, x, rate)  # same block: its channels stay as they are
                continue
            kind = kind_of(name)
            block = BlockBuilder(net, self.spec, prefix, ("stages", index), name, view(stage, kind, name), settings,
                                 channels, stride, b == strided, rate)  # fmt: skip
            start, block_input = len(net.graph), x
            x, channels = residual.build(kind, block, x)
            template, template_key = Template(prefix, block_input, net.graph.nodes[start:]), key
        return x, channels

    def _head(self, x: str, channels: int) -> str:
        net, head = self.net, self.spec.head
        x, _ = LayerList(net, "head", net.settings, dense_initializer=head.classifier.initializer).emit(
            x, head.layers, ("head", "layers"), channels
        )
        c = head.classifier
        assert self.spec.classes is not None  # backbone.check: a classifier head has classes
        kernel_l2 = net.settings.kernel_l2 if c.kernel_l2 is None else c.kernel_l2
        x = net.add(g.Dense("head.classifier", (x,), ("head", "classifier"), units=self.spec.classes, use_bias=c.bias,
                            initializer=c.initializer, kernel_l2=kernel_l2))  # fmt: skip
        if head.output == "softmax":
            x = net.act("head.softmax", x, ("head", "output"), "softmax")
        return x
