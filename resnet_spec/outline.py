"""A network as people draw and compare it: stem, stages of blocks, head.

Built from the validated graph only (node names ``stage2.block0.conv1``, the residual
:class:`~resnet_spec.graph.Add` whose second input is the shortcut, and the shape pass's
per-node counts), so what ``diagram`` draws and ``diff`` compares is the network that was
built, whatever block kind or spec shorthand produced it. The spec is read for one thing only:
the stage's block kind name, as a label.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import graph as g
from .diagnostics import render_text
from .pipeline import Architecture, validate
from .shapes import Shape, fmt
from .summary import group_of


@dataclass(frozen=True)
class ShortcutPath:
    """How a block's input reaches its residual add."""

    kind: str  # identity, zero_pad, projection, avg_pool_projection (or the ops, for anything else)
    detail: str  # "1x1 conv /2 + norm", "x[::2, ::2], channels +8 +8"; empty for identity
    params: int

    def describe(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


@dataclass(frozen=True)
class Block:
    """One group of nodes: ``stem``, ``stage2.block0`` or ``head``."""

    name: str
    input_shape: Shape
    output_shape: Shape
    layers: str  # the residual branch ("3x3/2, 32 -> 3x3, 32") or the stem/head layer sequence
    shortcut: ShortcutPath | None  # None for the stem, the head and blocks without a residual add
    params_trainable: int
    params_non_trainable: int
    macs: int

    @property
    def params(self) -> int:
        return self.params_trainable + self.params_non_trainable

    @property
    def stage(self) -> str:
        return self.name.split(".")[0]

    @property
    def index(self) -> int:
        """Position in the stage (``stage2.block7`` -> 7); -1 for the stem and the head."""
        last = self.name.rsplit(".", 1)[-1]
        return int(last[5:]) if last.startswith("block") and last[5:].isdigit() else -1

    @property
    def stride(self) -> int:
        return (
            self.input_shape[0] // self.output_shape[0] if len(self.output_shape) == 3 and self.output_shape[0] else 1
        )

    def same_as(self, other: Block) -> bool:
        """Identical but for the name: such neighbours collapse into one ``xN`` box."""
        return (self.input_shape, self.output_shape, self.layers, self.shortcut, self.params_trainable,
                self.params_non_trainable, self.macs) == (other.input_shape, other.output_shape, other.layers,
                                                          other.shortcut, other.params_trainable,
                                                          other.params_non_trainable, other.macs)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """Consecutive identical blocks of a stage (length 1 for a block that differs from its neighbours)."""

    blocks: tuple[Block, ...]

    @property
    def first(self) -> Block:
        return self.blocks[0]

    @property
    def count(self) -> int:
        return len(self.blocks)

    @property
    def label(self) -> str:
        """``block3`` or ``block1..block199``."""
        first, last = self.blocks[0].name.rsplit(".", 1)[-1], self.blocks[-1].name.rsplit(".", 1)[-1]
        return first if self.count == 1 else f"{first}..{last}"


@dataclass
class Stage:
    name: str
    blocks: list[Block]
    kind: str = ""  # the spec's block kind(s), a label only ("basic", "first_unit, then preact_bottleneck")

    @property
    def filters(self) -> int:
        return self.blocks[-1].output_shape[-1]

    @property
    def stride(self) -> int:
        return self.blocks[0].stride

    @property
    def params(self) -> int:
        return sum(b.params for b in self.blocks)

    @property
    def macs(self) -> int:
        return sum(b.macs for b in self.blocks)

    def runs(self, collapse: bool = True) -> list[Run]:
        runs: list[list[Block]] = []
        for block in self.blocks:
            if collapse and runs and runs[-1][-1].same_as(block):
                runs[-1].append(block)
            else:
                runs.append([block])
        return [Run(tuple(r)) for r in runs]


@dataclass
class Outline:
    name: str
    hash: str
    input_shape: Shape
    output_shape: Shape
    stem: Block | None
    stages: list[Stage]
    head: Block | None
    params_trainable: int
    params_non_trainable: int
    macs: int
    depth: int  # weighted layers on the main path: stem and branch convolutions plus the classifier
    extra: list[Block] = field(default_factory=list)  # groups outside stem/stages/head (none today)
    settings: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # node -> (op, attributes)

    @property
    def blocks(self) -> list[Block]:
        return [b for s in self.stages for b in s.blocks]

    @property
    def params(self) -> int:
        return self.params_trainable + self.params_non_trainable


def outline(arch: Architecture) -> Outline:
    groups: dict[str, list[g.Node]] = {}
    for node in arch.graph:
        groups.setdefault(group_of(node.name), []).append(node)
    stages: dict[str, Stage] = {}
    stem = head = None
    extra: list[Block] = []
    depth = 0
    for name, nodes in groups.items():
        if name == "input":
            continue
        block, convs = _block(arch, name, nodes)
        depth += convs
        if name == "stem":
            stem = block
        elif name == "head":
            head = block
        elif name.startswith("stage") and block.index >= 0:
            stages.setdefault(block.stage, Stage(block.stage, [])).blocks.append(block)
        else:
            extra.append(block)
    for index, stage in enumerate(stages.values()):
        stage.kind = _stage_kind(arch, index)
    return Outline(
        arch.name, arch.hash, arch.shape_of(arch.graph.input.name), arch.output_shape, stem, list(stages.values()),
        head, arch.params_trainable, arch.params_non_trainable, arch.macs, depth, extra,
        {n.name: (n.op, n.attributes()) for n in arch.graph},
    )  # fmt: skip


def _block(arch: Architecture, name: str, nodes: list[g.Node]) -> tuple[Block, int]:
    """The block's view and how many of its layers count towards depth."""
    members = {n.name for n in nodes}
    outside = [i for n in nodes for i in n.inputs if i not in members]
    input_shape = arch.shape_of(outside[0]) if outside else arch.shape_of(nodes[0].name)
    adds = [n for n in nodes if isinstance(n, g.Add)]
    shortcut = None
    branch = nodes
    if adds:
        add = adds[-1]
        on_branch = _ancestors(arch.graph, add.inputs[0], members)
        side = _ancestors(arch.graph, add.inputs[1], members) - on_branch
        path = [n for n in nodes if n.name in side]
        entries = [i for n in path for i in n.inputs if i not in side] if path else [add.inputs[1]]
        inner = [e.rsplit(".", 1)[-1] for e in entries if e in members]  # e.g. a pre-activated input
        shortcut = _shortcut(arch, path, f"from {inner[0]}" if inner else "")
        branch = [n for n in nodes if n.name not in side]
        layers = _branch_sketch(branch)
        weighted = sum(isinstance(n, g.Conv2D) for n in branch)
    else:
        layers = " -> ".join(_describe(n) for n in nodes)
        classifier = name == "head" and any(isinstance(n, g.Dense) for n in nodes)
        weighted = sum(isinstance(n, g.Conv2D) for n in nodes) + int(classifier)
    infos = [arch.analysis.info[n.name] for n in nodes]
    block = Block(
        name, input_shape, arch.shape_of(nodes[-1].name), layers, shortcut,
        sum(i.params_trainable for i in infos), sum(i.params_non_trainable for i in infos), sum(i.macs for i in infos),
    )  # fmt: skip
    return block, weighted


def _ancestors(graph: g.Graph, start: str, members: set[str]) -> set[str]:
    """``start`` and every node of the block it reads from, directly or not."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in members:
            continue
        seen.add(name)
        stack.extend(graph[name].inputs)
    return seen


def _shortcut(arch: Architecture, path: list[g.Node], source: str) -> ShortcutPath:
    """The shortcut's kind from the nodes on it; ``source`` names the node of the block it reads
    when that is not the block's input (``from act1``: the pre-activated input)."""
    shortcut = _shortcut_kind(arch, path)
    if not source:
        return shortcut
    return ShortcutPath(shortcut.kind, ", ".join(filter(None, (shortcut.detail, source))), shortcut.params)


def _shortcut_kind(arch: Architecture, path: list[g.Node]) -> ShortcutPath:
    params = sum(arch.analysis.info[n.name].params_trainable + arch.analysis.info[n.name].params_non_trainable
                 for n in path)  # fmt: skip
    if not path:
        return ShortcutPath("identity", "", 0)
    pads = [n for n in path if isinstance(n, g.ChannelPadShortcut)]
    convs = [n for n in path if isinstance(n, g.Conv2D)]
    if pads and not convs:
        pad = pads[0]
        return ShortcutPath("zero_pad", f"x[::{pad.stride}, ::{pad.stride}], channels +{pad.pad_before} +{pad.pad_after}",
                            params)  # fmt: skip
    if convs:
        kind = "avg_pool_projection" if any(isinstance(n, g.AvgPool) for n in path) else "projection"
        return ShortcutPath(kind, " + ".join(_describe(n) for n in path if not isinstance(n, g.Activation)), params)
    return ShortcutPath(" + ".join(n.op for n in path), "", params)


def _branch_sketch(branch: list[g.Node]) -> str:
    """``3x3/2, 32 -> 3x3, 32``, the notation of the ResNet paper's table; ``pre-act`` when the
    branch opens with a normalization; marks for squeeze-excite, dropout and stochastic depth."""
    convs = [n for n in branch if isinstance(n, g.Conv2D)]
    text = " -> ".join(f"{_conv_shape(c)}, {c.filters}" + (f", g{c.groups}" if c.groups > 1 else "") for c in convs)
    first = next((n for n in branch if not isinstance(n, g.ZeroPad)), None)
    if isinstance(first, g.BatchNorm):
        text = "pre-act " + text
    marks = [mark for kind, mark in ((g.Scale, "SE"), (g.Dropout, "dropout"), (g.DropPath, "drop path"))
             if any(isinstance(n, kind) for n in branch)]  # fmt: skip
    return text + "".join(f" +{m}" for m in marks) if text else " -> ".join(_describe(n) for n in branch)


def _conv_shape(conv: g.Conv2D) -> str:
    kh, kw = conv.kernel_size
    sh, sw = conv.strides
    stride = "" if (sh, sw) == (1, 1) else f"/{sh}" if sh == sw else f"/{sh}x{sw}"
    return f"{kh}x{kw}{stride}"


def _describe(node: g.Node) -> str:
    if isinstance(node, g.Conv2D):
        return f"{_conv_shape(node)} conv {node.filters}" + (f" g{node.groups}" if node.groups > 1 else "")
    if isinstance(node, (g.MaxPool, g.AvgPool)):
        (ph, pw), (sh, sw) = node.pool_size, node.strides
        stride = "" if (sh, sw) == (1, 1) else f"/{sh}" if sh == sw else f"/{sh}x{sw}"
        return f"{ph}x{pw}{stride} {'max' if isinstance(node, g.MaxPool) else 'avg'} pool"
    if isinstance(node, g.Activation):
        return node.function
    if isinstance(node, g.Dense):
        return f"dense {node.units}"
    if isinstance(node, (g.Dropout, g.DropPath)):
        return f"{node.op.replace('_', ' ')} {node.rate:g}"
    names = {"batch_norm": "norm", "global_avg_pool": "global avg pool", "zero_pad": "pad"}
    return names.get(node.op, node.op.replace("_", " "))


def _stage_kind(arch: Architecture, index: int) -> str:
    """The spec's name for the stage's blocks, when the spec has one (a label, nothing depends on it)."""
    stages = getattr(arch.spec, "stages", None) or []
    if index >= len(stages):
        return ""
    block, first = getattr(stages[index], "block", None), getattr(stages[index], "first_block", None)
    if not isinstance(block, str):
        return ""
    return f"{first}, then {block}" if isinstance(first, str) and first != block else block


def shape_text(shape: Iterable[int]) -> str:
    return fmt(tuple(shape))


def iter_boxes(item: Outline, collapse: bool) -> Iterator[tuple[Stage, Run]]:
    for stage in item.stages:
        for run in stage.runs(collapse):
            yield stage, run


def load_outline(path: str, overrides: Sequence[str] = (), stream: TextIO | None = None) -> Outline | None:
    """Validate the spec at ``path`` ("-": standard input); its outline, or None after printing
    the located problems to ``stream``."""
    source: str | Path = Path(path) if path != "-" else "-"  # a plain string would be read as spec text
    result = validate(source, overrides=overrides)
    if result.architecture is None:
        for text in render_text(result.report.sorted(), result.document.source.text if result.document else None):
            print(text, file=stream or sys.stderr)
        return None
    return outline(result.architecture)
