"""How nodes are made: the expander's node sink (:class:`NetworkBuilder`) and the small interface
a block kind builds with (:class:`BlockBuilder`).

The network builder adds nodes to a :class:`~resnet_spec.graph.Graph` and keeps every node's
output shape as far as it is known, with the shape pass's own rules
(:func:`resnet_spec.shapes.step`), so that each padding is resolved per side before its node is
stored. Blocks that repeat (same kind, input shape and stride) are copied rather than rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from .. import graph as g
from .. import shapes
from ..diagnostics import Diagnostic, KeyPath
from ..spec_layers import LayerSettings, NormSettings
from .kind import Place

if TYPE_CHECKING:
    from ..spec import ResNetSpec
    from .options import StageOptions


class ExpansionError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].message if diagnostics else "expansion failed")
        self.diagnostics = diagnostics


def fail(code: str, message: str, key_path: KeyPath, hint: str | None = None) -> NoReturn:
    raise ExpansionError([Diagnostic(code, message, hint=hint, key_path=key_path)])


def whole(value: Fraction, what: str, origin: KeyPath) -> int:
    """A derived channel count ``what`` (how it is derived, "filters x width_multiplier"),
    refused (RS208) unless it is a whole positive number."""
    nearest = round(value)
    if abs(value - nearest) > 1e-9 or nearest < 1:
        fail("RS208", f"channel count {what} = {float(value):g} is not a whole positive number", origin,
             "choose filters, ratios and multipliers whose product is an integer")  # fmt: skip
    return nearest


class Exact:
    """The expander's rounding of derived widths (see :class:`.kind.Whole`): none; a width
    that is not whole is refused at ``origin``."""

    def __init__(self, origin: KeyPath):
        self.origin = origin

    def __call__(self, value: Fraction, what: str) -> int:
        return whole(value, what, self.origin)

    def at(self, origin: KeyPath) -> Exact:
        return Exact(origin)


def pair(value: int | list[int]) -> g.Pair:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


# --------------------------------------------------------------------------- the settings cascade


@dataclass(frozen=True)
class Norm:
    decay: float
    epsilon: float
    running_variance: Literal["biased", "unbiased"]
    center: bool
    scale: bool

    def over(self, layer: NormSettings | None) -> Norm:
        if layer is None:
            return self
        return Norm(
            decay=self.decay if layer.running_stats_decay is None else layer.running_stats_decay,
            epsilon=self.epsilon if layer.epsilon is None else layer.epsilon,
            running_variance=self.running_variance if layer.running_variance is None else layer.running_variance,
            center=self.center if layer.center is None else layer.center,
            scale=self.scale if layer.scale is None else layer.scale,
        )


@dataclass(frozen=True)
class Settings:
    """The cascade, fully resolved."""

    norm: Norm
    activation: g.ActivationFunction
    initializer: g.InitializerName
    conv_bias: bool
    kernel_l2: float
    padding: shapes.PaddingSetting

    def over(self, layer: LayerSettings | None) -> Settings:
        if layer is None:
            return self
        changes = {k: v for k, v in layer.model_dump(exclude={"norm"}).items() if v is not None}
        return replace(self, norm=self.norm.over(layer.norm), **changes)


BUILTIN_SETTINGS = Settings(
    norm=Norm(decay=0.9, epsilon=1e-5, running_variance="biased", center=True, scale=True),
    activation="relu", initializer="he_normal", conv_bias=False, kernel_l2=0.0, padding="same",
)  # fmt: skip


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class Template:
    """A block as built, to copy for the blocks that repeat it: its nodes and where they start."""

    prefix: str
    block_input: str
    nodes: list[g.Node]


class NetworkBuilder:
    """Adds nodes to a graph, tracking output shapes so that paddings are stored resolved."""

    def __init__(self, spec: ResNetSpec, settings: Settings):
        self.spec = spec
        self.settings = settings
        self.graph = g.Graph()
        self.shapes: dict[str, shapes.Shape | None] = {}

    def add(self, node: g.Node) -> str:
        name = self.graph.add(node)
        known = [shape for shape in map(self.shapes.__getitem__, node.inputs) if shape is not None]
        info = shapes.step(node, known)[0] if len(known) == len(node.inputs) else None
        self.shapes[name] = None if info is None else info.output_shape
        return name

    def shape(self, name: str) -> shapes.Shape | None:
        return self.shapes[name]

    def conv(self, name: str, x: str, origin: KeyPath, s: Settings, *, filters: int, kernel: int | list[int] = 3,
             stride: int | list[int] = 1, padding: shapes.PaddingSetting | None = None, groups: int = 1,
             bias: bool | None = None, initializer: g.InitializerName | None = None,
             kernel_l2: float | None = None) -> str:  # fmt: skip
        kernel_size, strides = pair(kernel), pair(stride)
        resolved = shapes.resolve_padding(s.padding if padding is None else padding, kernel_size, strides, self.shapes[x])
        return self.add(g.Conv2D(
            name, (x,), origin, filters=filters, kernel_size=kernel_size, strides=strides, padding=resolved,
            groups=groups, use_bias=s.conv_bias if bias is None else bias, initializer=initializer or s.initializer,
            kernel_l2=s.kernel_l2 if kernel_l2 is None else kernel_l2,
        ))  # fmt: skip

    def norm(self, name: str, x: str, origin: KeyPath, s: Settings, layer: NormSettings | None = None,
             zero_init: bool = False) -> str:  # fmt: skip
        n = s.norm.over(layer)
        return self.add(g.BatchNorm(
            name, (x,), origin, decay=n.decay, epsilon=n.epsilon, running_variance=n.running_variance,
            center=n.center, scale=n.scale, zero_init=zero_init,
        ))  # fmt: skip

    def act(self, name: str, x: str, origin: KeyPath, function: g.ActivationFunction) -> str:
        return self.add(g.Activation(name, (x,), origin, function=function))

    def pool(self, node: type[g.MaxPool | g.AvgPool], name: str, x: str, origin: KeyPath, *, size: g.Pair,
             strides: g.Pair, padding: shapes.PaddingSetting, **extra: Any) -> str:  # fmt: skip
        resolved = shapes.resolve_padding(padding, size, strides, self.shapes[x])
        return self.add(node(name, (x,), origin, pool_size=size, strides=strides, padding=resolved, **extra))

    def repeat(self, template: Template, prefix: str, x: str, drop_rate: float) -> str:
        """The template block's nodes again, named under ``prefix`` and reading ``x``.

        Blocks of a stage that agree in kind, input shape and stride are the same nodes up to
        their names (every name starts with the block's prefix) and their drop-path rate, so the
        hundreds of identical blocks of a deep net are copied instead of re-derived node by node.
        Only the block's output shape is recorded: nothing outside a block reads its inner nodes."""
        cut = len(template.prefix)
        names = {template.block_input: x}
        graph_add = self.graph.add
        for node in template.nodes:
            name = names[node.name] = prefix + node.name[cut:]
            changes: dict[str, Any] = {"name": name, "inputs": tuple(names[i] for i in node.inputs)}
            if isinstance(node, g.DropPath):
                changes["rate"] = drop_rate
            graph_add(g.evolve(node, **changes))
        self.shapes[name] = self.shapes[template.nodes[-1].name]
        return name


# --------------------------------------------------------------------------- one block


@dataclass
class BlockBuilder:
    """What a block kind sees while it builds one block: the block's place and options, and
    node helpers that name nodes under the block's prefix (``conv("conv1", x)`` adds
    ``stage2.block0.conv1``) and give them the stage as their origin.

    ``options`` are the stage's options as the kind's own model (a first block of another kind
    gets the options both kinds have, see :func:`.registry.view`). ``stride`` is this block's
    stride: the stage's in the block that carries it (``strided``), 1 in the others."""

    net: NetworkBuilder
    spec: ResNetSpec
    prefix: str
    origin: KeyPath
    name: str  # the kind as the spec names it (a custom block's name)
    options: StageOptions
    settings: Settings
    in_channels: int
    stride: int
    strided: bool
    drop_rate: float

    @property
    def filters(self) -> int:
        return self.options.filters

    def conv(self, local: str, x: str, *, filters: int, kernel: int = 3, stride: int = 1, groups: int = 1,
             bias: bool | None = None, origin: KeyPath | None = None) -> str:  # fmt: skip
        return self.net.conv(f"{self.prefix}.{local}", x, origin or self.origin, self.settings, filters=filters,
                             kernel=kernel, stride=stride, groups=groups, bias=bias)  # fmt: skip

    def norm(self, local: str, x: str, *, origin: KeyPath | None = None) -> str:
        return self.net.norm(f"{self.prefix}.{local}", x, origin or self.origin, self.settings)

    def act(self, local: str, x: str, *, function: g.ActivationFunction | None = None, origin: KeyPath | None = None) -> str:
        return self.net.act(f"{self.prefix}.{local}", x, origin or self.origin, function or self.settings.activation)

    def dropout(self, local: str, x: str, rate: float) -> str:
        return self.net.add(g.Dropout(f"{self.prefix}.{local}", (x,), self.origin, rate=rate))

    def add(self, node: g.Node) -> str:
        """Any other node (its name already under the prefix)."""
        return self.net.add(node)

    @property
    def whole(self) -> Exact:
        return Exact(self.origin)

    @property
    def place(self) -> Place:
        return Place(self.spec, self.name, self.options, self.in_channels, self.stride)
