"""Expand a typed spec into the backend-neutral :class:`~resnet_spec.graph.Graph`.

The expander is purely structural: it resolves the settings cascade, the depth shorthand and
every block kind into primitive nodes with deterministic names, and tracks channel counts (which
the spec fixes). Spatial sizes are the shape pass's job, so "same" padding stays symbolic here
(``"same"``) and :func:`resnet_spec.shapes.analyze` resolves it to per-side integers.

Naming: ``stem.conv1``, ``stage2.block0.conv1``, ``stage2.block0.shortcut.conv``, ``head.classifier``.
Stages count from 1 and blocks from 0, as torchvision's ``layer2.0.conv1`` does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from . import budget
from . import graph as g
from .depth import resolve as resolve_depth
from .diagnostics import Diagnostic, KeyPath
from .spec import (
    BUILTIN_BLOCKS,
    ActivationLayer,
    AvgPoolLayer,
    ConvLayer,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    LayerSettings,
    MaxPoolLayer,
    NormLayer,
    NormSettings,
    ResNetSpec,
    Shortcut,
    Stage,
    ZeroPadLayer,
)


@dataclass(frozen=True)
class Settings:
    """The cascade, fully resolved."""

    norm: NormSettings
    activation: str
    initializer: str
    conv_bias: bool
    kernel_l2: float
    padding: Any

    def over(self, layer: LayerSettings | None) -> Settings:
        if layer is None:
            return self
        norm = self.norm
        if layer.norm is not None:
            norm = norm.model_copy(update=layer.norm.model_dump(exclude_none=True))
        changes = {k: v for k, v in layer.model_dump(exclude={"norm"}).items() if v is not None}
        return replace(self, norm=norm, **changes)


BUILTIN_SETTINGS = Settings(
    norm=NormSettings(running_stats_decay=0.9, epsilon=1e-5, running_variance="biased", center=True, scale=True),
    activation="relu",
    initializer="he_normal",
    conv_bias=False,
    kernel_l2=0.0,
    padding="same",
)


class ExpansionError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].message if diagnostics else "expansion failed")
        self.diagnostics = diagnostics


def expand(spec: ResNetSpec) -> tuple[g.Graph | None, list[Diagnostic]]:
    problems = _check_block_kinds(spec)
    if problems:
        return None, problems
    depth, problems = resolve_depth(spec)
    if depth is None:
        return None, problems
    problems = budget.check(spec, depth.block_counts)
    if problems:
        return None, problems
    try:
        return _Expander(spec).build(depth.block_counts), []
    except ExpansionError as error:
        return None, error.diagnostics


def _check_block_kinds(spec: ResNetSpec) -> list[Diagnostic]:
    import difflib

    known = [*BUILTIN_BLOCKS, *spec.blocks]
    found = []
    for i, stage in enumerate(spec.stages):
        for key in ("block", "first_block"):
            kind = getattr(stage, key)
            if kind is not None and kind not in known:
                match = difflib.get_close_matches(kind, known, n=1)
                hint = (f"did you mean '{match[0]}'? " if match else "") + "known kinds: " + ", ".join(known)
                found.append(Diagnostic("RS108", f"unknown block kind '{kind}'", hint=hint, key_path=("stages", i, key)))
    return found


@dataclass
class _Block:
    prefix: str
    origin: KeyPath
    stage: Stage
    settings: Settings
    in_channels: int
    filters: int
    stride: int
    first: bool


@dataclass(frozen=True)
class _Template:
    """A block as built, for :meth:`_Expander._repeat`: what it was built from, and its nodes."""

    key: tuple[Any, ...]  # (kind, input channels, stride, first block of its stage)
    prefix: str
    block_input: str
    nodes: list[g.Node]


class _Expander:
    def __init__(self, spec: ResNetSpec):
        self.spec = spec
        self.graph = g.Graph()
        self._add = self.graph.add  # adds a node, returns its name
        self.settings = BUILTIN_SETTINGS.over(spec.defaults)

    def conv(self, name: str, x: str, origin: KeyPath, s: Settings, *, filters: int, kernel: Any = 3,
             stride: Any = 1, padding: Any = None, groups: int = 1, bias: bool | None = None,
             initializer: str | None = None, kernel_l2: float | None = None) -> str:  # fmt: skip
        kernel_size = _pair(kernel)
        strides = _pair(stride)
        node = g.Conv2D(
            name, (x,), origin, filters=filters, kernel_size=kernel_size, strides=strides,
            padding=_padding(s.padding if padding is None else padding, kernel_size), groups=groups,
            use_bias=s.conv_bias if bias is None else bias, initializer=initializer or s.initializer,  # type: ignore[arg-type]
            kernel_l2=s.kernel_l2 if kernel_l2 is None else kernel_l2,
        )  # fmt: skip
        return self._add(node)

    def norm(self, name: str, x: str, origin: KeyPath, s: Settings, layer: NormSettings | None = None,
             zero_init: bool = False) -> str:  # fmt: skip
        n = s.norm if layer is None else s.norm.model_copy(update=layer.model_dump(exclude_none=True, exclude={"type", "zero_init"}))
        return self._add(
            g.BatchNorm(
                name, (x,), origin, decay=n.running_stats_decay, epsilon=n.epsilon,  # type: ignore[arg-type]
                running_variance=n.running_variance, center=n.center, scale=n.scale, zero_init=zero_init,  # type: ignore[arg-type]
            )
        )  # fmt: skip

    def act(self, name: str, x: str, origin: KeyPath, function: str) -> str:
        return self._add(g.Activation(name, (x,), origin, function=function))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the whole network

    def build(self, counts: tuple[int, ...]) -> g.Graph:
        spec = self.spec
        x = self._add(g.Input("input", (), ("input",), shape=(spec.input.height, spec.input.width, spec.input.channels)))
        x, channels = self._layers("stem", x, spec.stem, ("stem",), self.settings, spec.input.channels, None)
        for index, (stage, blocks) in enumerate(zip(spec.stages, counts)):
            settings = self.settings.over(stage.defaults)
            template: _Template | None = None
            for b in range(blocks):
                block = _Block(
                    prefix=f"stage{index + 1}.block{b}", origin=("stages", index), stage=stage, settings=settings,
                    in_channels=channels, filters=stage.filters, stride=stage.stride if b == 0 else 1, first=b == 0,
                )  # fmt: skip
                kind = stage.first_block if (b == 0 and stage.first_block) else stage.block
                key = (kind, block.in_channels, block.stride, block.first)
                if template is not None and template.key == key:
                    x = self._repeat(template, block.prefix, x)  # same block: its channels stay as they are
                    continue
                start, block_input = len(self.graph), x
                x, channels = self._block(kind, x, block)
                template = _Template(key, block.prefix, block_input, self.graph.nodes[start:])
        self._head(x, channels)
        return self.graph

    def _repeat(self, template: _Template, prefix: str, x: str) -> str:
        """The template block's nodes again, named under ``prefix`` and reading ``x``.

        Blocks of a stage that agree in kind, input channels and stride are the same nodes up to
        their names (every name starts with the block's prefix), so the hundreds of identical
        blocks of a deep net are copied instead of re-derived node by node."""
        cut = len(template.prefix)
        names = {template.block_input: x}
        for node in template.nodes:
            name = names[node.name] = prefix + node.name[cut:]
            self._add(g.evolve(node, name=name, inputs=tuple(names[i] for i in node.inputs)))
        return name

    # ------------------------------------------------------------------ layer lists (stem, custom blocks)

    def _layers(self, prefix: str, x: str, layers: list[Any], origin: KeyPath, s: Settings, channels: int,
                block: _Block | None) -> tuple[str, int]:  # fmt: skip
        counter: Counter[str] = Counter()
        for i, layer in enumerate(layers):
            where = (*origin, i)
            short = _SHORT[type(layer)]
            counter[short] += 1
            name = f"{prefix}.{short}{counter[short]}"
            if isinstance(layer, ConvLayer):
                filters = self._conv_filters(layer, where, block)
                stride = self._conv_stride(layer, where, block)
                x = self.conv(name, x, where, s, filters=filters, kernel=layer.kernel_size, stride=stride,
                              padding=layer.padding, groups=layer.groups, bias=layer.bias,
                              initializer=layer.initializer, kernel_l2=layer.kernel_l2)  # fmt: skip
                channels = filters
            elif isinstance(layer, NormLayer):
                x = self.norm(name, x, where, s, layer, zero_init=layer.zero_init)
            elif isinstance(layer, ActivationLayer):
                x = self.act(name, x, where, layer.function or s.activation)
            else:
                x = self._simple_layer(name, x, where, layer)
        return x, channels

    def _simple_layer(self, name: str, x: str, where: KeyPath, layer: Any) -> str:
        if isinstance(layer, ZeroPadLayer):
            return self._add(g.ZeroPad(name, (x,), where, padding=_explicit(layer.padding)))
        if isinstance(layer, (MaxPoolLayer, AvgPoolLayer)):
            size = _pair(layer.pool_size)
            strides = _pair(layer.stride if layer.stride is not None else layer.pool_size)
            padding = _padding(layer.padding, size)
            if isinstance(layer, MaxPoolLayer):
                return self._add(g.MaxPool(name, (x,), where, pool_size=size, strides=strides, padding=padding))
            return self._add(
                g.AvgPool(name, (x,), where, pool_size=size, strides=strides, padding=padding, count_padding=layer.count_padding)
            )
        if isinstance(layer, DropoutLayer):
            return self._add(g.Dropout(name, (x,), where, rate=layer.rate))
        if isinstance(layer, GlobalAvgPoolLayer):
            return self._add(g.GlobalAvgPool(name, (x,), where))
        if isinstance(layer, FlattenLayer):
            return self._add(g.Flatten(name, (x,), where))
        raise TypeError(f"unhandled layer {type(layer).__name__}")

    def _conv_filters(self, layer: ConvLayer, where: KeyPath, block: _Block | None) -> int:
        if block is None:
            if layer.filters is None:
                raise ExpansionError([Diagnostic("RS102", "a stem conv needs `filters`", key_path=(*where, "filters"))])
            if layer.filters_ratio is not None:
                raise ExpansionError([_misplaced(where, "filters_ratio", "custom blocks")])
            return layer.filters
        if layer.filters is not None and layer.filters_ratio is not None:
            raise ExpansionError([Diagnostic("RS107", "give `filters` or `filters_ratio`, not both", key_path=where)])
        if layer.filters is not None:
            return layer.filters
        ratio = layer.filters_ratio if layer.filters_ratio is not None else 1.0
        return _whole(block.filters * ratio, f"{block.filters} x filters_ratio {ratio}", (*where, "filters_ratio"))

    def _conv_stride(self, layer: ConvLayer, where: KeyPath, block: _Block | None) -> Any:
        if layer.stride != "block":
            return layer.stride
        if block is None:
            raise ExpansionError([_misplaced(where, "stride: block", "custom blocks")])
        return block.stride

    # ------------------------------------------------------------------ blocks

    def _block(self, kind: str, x: str, b: _Block) -> tuple[str, int]:
        if kind in self.spec.blocks:
            return self._custom_block(kind, x, b)
        return _BUILDERS[kind](self, x, b)

    def _custom_block(self, kind: str, x: str, b: _Block) -> tuple[str, int]:
        custom = self.spec.blocks[kind]
        settings = b.settings.over(custom.defaults)
        branch, channels = self._layers(b.prefix, x, custom.layers, ("blocks", kind, "layers"), settings, b.in_channels, b)
        shortcut = custom.shortcut or b.stage.shortcut
        return self._merge(b, branch, x, x, channels, shortcut, custom.activation_after_add)

    def _merge(self, b: _Block, branch: str, x: str, preactivated: str, out_channels: int, shortcut: Shortcut,
               activate: bool) -> tuple[str, int]:  # fmt: skip
        if b.stage.stochastic_depth_rate > 0:
            branch = self._add(g.DropPath(f"{b.prefix}.drop_path", (branch,), b.origin, rate=b.stage.stochastic_depth_rate))
        short = self._shortcut(b, x, preactivated, out_channels, shortcut)
        out = self._add(g.Add(f"{b.prefix}.add", (branch, short), (*b.origin, "shortcut")))
        if activate:
            out = self.act(f"{b.prefix}.out_act", out, b.origin, b.settings.activation)
        return out, out_channels

    def _shortcut(self, b: _Block, x: str, preactivated: str, out_channels: int, sc: Shortcut) -> str:
        changes = b.in_channels != out_channels or b.stride != 1
        if sc.kind == "identity" or not (changes or sc.every_block):
            return x
        origin = (*b.origin, "shortcut")
        if sc.kind == "zero_pad":
            extra = out_channels - b.in_channels
            before = extra // 2 if extra > 0 else extra  # negative: the shape pass reports RS204
            return self._add(
                g.ChannelPadShortcut(f"{b.prefix}.shortcut.pad", (x,), origin, stride=b.stride, pad_before=before, pad_after=extra - before if extra > 0 else 0)
            )
        source = preactivated if sc.source == "preactivated" else x
        stride = b.stride
        if sc.kind == "avg_pool_projection" and b.stride > 1:
            source = self._add(
                g.AvgPool(f"{b.prefix}.shortcut.pool", (source,), origin, pool_size=(stride, stride),
                          strides=(stride, stride), padding="same", count_padding=False)  # type: ignore[arg-type]
            )  # fmt: skip
            stride = 1
        out = self.conv(f"{b.prefix}.shortcut.conv", source, origin, b.settings, filters=out_channels, kernel=1,
                        stride=stride, padding="valid", bias=sc.bias)  # fmt: skip
        if sc.norm:
            out = self.norm(f"{b.prefix}.shortcut.norm", out, origin, b.settings)
        return out

    def _squeeze_excite(self, b: _Block, x: str, channels: int) -> str:
        se = b.stage.squeeze_excite
        if se is None:
            return x
        origin = (*b.origin, "squeeze_excite")
        reduced = max(1, channels // se.reduction)
        p = f"{b.prefix}.se"
        pooled = self._add(g.GlobalAvgPool(f"{p}.pool", (x,), origin, keepdims=True))
        h = self.conv(f"{p}.reduce", pooled, origin, b.settings, filters=reduced, kernel=1, padding="valid", bias=True)
        h = self.act(f"{p}.act", h, origin, b.settings.activation)
        h = self.conv(f"{p}.expand", h, origin, b.settings, filters=channels, kernel=1, padding="valid", bias=True)
        h = self.act(f"{p}.gate", h, origin, "sigmoid")
        return self._add(g.Scale(f"{p}.scale", (x, h), origin))

    def _inner_width(self, b: _Block) -> int:
        st = b.stage
        if st.width_per_group is not None:
            raw, what = st.groups * st.width_per_group * st.width_multiplier, "groups x width_per_group x width_multiplier"
        else:
            raw, what = b.filters / st.bottleneck_ratio * st.width_multiplier, "filters / bottleneck_ratio x width_multiplier"
        width = _whole(raw, f"{what} = {raw:g}", b.origin)
        if width % st.groups:
            raise ExpansionError([
                Diagnostic("RS206", f"inner width {width} is not divisible by groups={st.groups}", key_path=(*b.origin, "groups"))
            ])  # fmt: skip
        return width

    def _head(self, x: str, channels: int) -> None:
        head = self.spec.head
        counter: Counter[str] = Counter()
        for i, layer in enumerate(head.layers):
            where = ("head", "layers", i)
            short = _SHORT[type(layer)]
            counter[short] += 1
            name = f"head.{short}{counter[short]}"
            if isinstance(layer, DenseLayer):
                x = self._add(
                    g.Dense(name, (x,), where, units=layer.units, use_bias=layer.bias,
                            initializer=layer.initializer or head.classifier.initializer,  # type: ignore[arg-type]
                            kernel_l2=_first(layer.kernel_l2, self.settings.kernel_l2))
                )  # fmt: skip
                if layer.activation != "linear":
                    counter["act"] += 1
                    x = self.act(f"head.act{counter['act']}", x, where, layer.activation)
            elif isinstance(layer, NormLayer):
                x = self.norm(name, x, where, self.settings, layer, zero_init=layer.zero_init)
            elif isinstance(layer, ActivationLayer):
                x = self.act(name, x, where, layer.function or self.settings.activation)
            else:
                x = self._simple_layer(name, x, where, layer)
        c = head.classifier
        x = self._add(
            g.Dense("head.classifier", (x,), ("head", "classifier"), units=self.spec.classes, use_bias=c.bias,
                    initializer=c.initializer, kernel_l2=_first(c.kernel_l2, self.settings.kernel_l2))
        )  # fmt: skip
        if head.output == "softmax":
            self.act("head.softmax", x, ("head", "output"), "softmax")


# ---------------------------------------------------------------------- built-in blocks


def _basic(e: _Expander, x: str, b: _Block) -> tuple[str, int]:
    s, st, p = b.settings, b.stage, b.prefix
    width = _whole(b.filters * st.width_multiplier, f"filters x width_multiplier = {b.filters * st.width_multiplier:g}", b.origin)
    h = e.conv(f"{p}.conv1", x, b.origin, s, filters=width, stride=b.stride)
    h = e.act(f"{p}.act1", e.norm(f"{p}.norm1", h, b.origin, s), b.origin, s.activation)
    if st.dropout_between_convs > 0:
        h = e._add(g.Dropout(f"{p}.dropout", (h,), b.origin, rate=st.dropout_between_convs))
    h = e.conv(f"{p}.conv2", h, b.origin, s, filters=width)
    h = e.norm(f"{p}.norm2", h, b.origin, s, zero_init=st.zero_init_last_norm)
    h = e._squeeze_excite(b, h, width)
    return e._merge(b, h, x, x, width, st.shortcut, activate=True)


def _bottleneck(e: _Expander, x: str, b: _Block) -> tuple[str, int]:
    s, st, p = b.settings, b.stage, b.prefix
    mid = e._inner_width(b)
    first_stride, middle_stride = (b.stride, 1) if st.stride_placement == "first_1x1" else (1, b.stride)
    h = e.conv(f"{p}.conv1", x, b.origin, s, filters=mid, kernel=1, stride=first_stride)
    h = e.act(f"{p}.act1", e.norm(f"{p}.norm1", h, b.origin, s), b.origin, s.activation)
    h = e.conv(f"{p}.conv2", h, b.origin, s, filters=mid, kernel=3, stride=middle_stride, groups=st.groups)
    h = e.act(f"{p}.act2", e.norm(f"{p}.norm2", h, b.origin, s), b.origin, s.activation)
    h = e.conv(f"{p}.conv3", h, b.origin, s, filters=b.filters, kernel=1)
    h = e.norm(f"{p}.norm3", h, b.origin, s, zero_init=st.zero_init_last_norm)
    h = e._squeeze_excite(b, h, b.filters)
    return e._merge(b, h, x, x, b.filters, st.shortcut, activate=True)


def _preact(e: _Expander, x: str, b: _Block, index: int) -> tuple[str, str]:
    s = b.settings
    h = e.norm(f"{b.prefix}.norm{index}", x, b.origin, s)
    return h, e.act(f"{b.prefix}.act{index}", h, b.origin, s.activation)


def _preact_basic(e: _Expander, x: str, b: _Block) -> tuple[str, int]:
    s, st, p = b.settings, b.stage, b.prefix
    width = _whole(b.filters * st.width_multiplier, f"filters x width_multiplier = {b.filters * st.width_multiplier:g}", b.origin)
    _, pre = _preact(e, x, b, 1)
    h = e.conv(f"{p}.conv1", pre, b.origin, s, filters=width, stride=b.stride)
    _, h = _preact(e, h, b, 2)
    if st.dropout_between_convs > 0:
        h = e._add(g.Dropout(f"{p}.dropout", (h,), b.origin, rate=st.dropout_between_convs))
    h = e.conv(f"{p}.conv2", h, b.origin, s, filters=width)
    h = e._squeeze_excite(b, h, width)
    return e._merge(b, h, x, pre, width, st.shortcut, activate=False)


def _preact_bottleneck(e: _Expander, x: str, b: _Block) -> tuple[str, int]:
    s, st, p = b.settings, b.stage, b.prefix
    mid = e._inner_width(b)
    first_stride, middle_stride = (b.stride, 1) if st.stride_placement == "first_1x1" else (1, b.stride)
    _, pre = _preact(e, x, b, 1)
    h = e.conv(f"{p}.conv1", pre, b.origin, s, filters=mid, kernel=1, stride=first_stride)
    _, h = _preact(e, h, b, 2)
    h = e.conv(f"{p}.conv2", h, b.origin, s, filters=mid, kernel=3, stride=middle_stride, groups=st.groups)
    _, h = _preact(e, h, b, 3)
    h = e.conv(f"{p}.conv3", h, b.origin, s, filters=b.filters, kernel=1)
    h = e._squeeze_excite(b, h, b.filters)
    return e._merge(b, h, x, pre, b.filters, st.shortcut, activate=False)


_BUILDERS = {"basic": _basic, "bottleneck": _bottleneck, "preact_basic": _preact_basic, "preact_bottleneck": _preact_bottleneck}

_SHORT: dict[type, str] = {
    ConvLayer: "conv", NormLayer: "norm", ActivationLayer: "act", ZeroPadLayer: "pad", MaxPoolLayer: "maxpool",
    AvgPoolLayer: "avgpool", DropoutLayer: "dropout", GlobalAvgPoolLayer: "pool", FlattenLayer: "flatten",
    DenseLayer: "dense",
}  # fmt: skip


# ---------------------------------------------------------------------- small helpers


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _explicit(value: Any) -> g.Padding4:
    return (value,) * 4 if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _padding(value: Any, kernel: tuple[int, int]) -> Any:
    """Everything but "same" resolves here; "same" needs the input size (the shape pass)."""
    if value == "same":
        return "same"
    if value == "valid":
        return (0, 0, 0, 0)
    if value == "symmetric":
        return (kernel[0] // 2, kernel[0] // 2, kernel[1] // 2, kernel[1] // 2)
    return _explicit(value)


def _whole(value: float, what: str, origin: KeyPath) -> int:
    if abs(value - round(value)) > 1e-9 or round(value) < 1:
        raise ExpansionError([
            Diagnostic("RS208", f"channel count {what} is not a whole positive number", key_path=origin,
                       hint="choose filters, ratios and multipliers whose product is an integer")
        ])  # fmt: skip
    return round(value)


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _misplaced(where: KeyPath, option: str, allowed: str) -> Diagnostic:
    return Diagnostic("RS109", f"`{option}` is only meaningful in {allowed}", key_path=where)
