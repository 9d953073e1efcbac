"""Lists of spec layers as graph nodes: the stem, the head and the branch of a custom block.

Nodes are named under a prefix and numbered per layer type (``stem.conv1``, ``stem.norm1``,
``stem.conv2``); each node's origin is its layer's key path. In a custom block a conv's
``filters`` default to the stage's, ``filters_ratio`` scales them, and ``stride: block`` is the
block's stride; elsewhere those are refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from .. import graph as g
from ..diagnostics import Diagnostic, KeyPath
from ..shapes import explicit_padding
from ..spec_layers import (
    ActivationLayer,
    AvgPoolLayer,
    ConvLayer,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    MaxPoolLayer,
    NormLayer,
    ZeroPadLayer,
)
from .builder import BlockBuilder, Exact, ExpansionError, NetworkBuilder, Settings, pair
from .kind import Whole

SpecLayer = (
    ConvLayer | NormLayer | ActivationLayer | ZeroPadLayer | MaxPoolLayer | AvgPoolLayer | DropoutLayer
    | GlobalAvgPoolLayer | FlattenLayer | DenseLayer
)  # fmt: skip

SHORT: dict[type, str] = {
    ConvLayer: "conv", NormLayer: "norm", ActivationLayer: "act", ZeroPadLayer: "pad", MaxPoolLayer: "maxpool",
    AvgPoolLayer: "avgpool", DropoutLayer: "dropout", GlobalAvgPoolLayer: "pool", FlattenLayer: "flatten",
    DenseLayer: "dense",
}  # fmt: skip


def conv_filters(layer: ConvLayer, stage_filters: int, round_: Whole) -> int:
    """A custom block's conv width: its `filters`, else the stage's times `filters_ratio`."""
    if layer.filters is not None:
        return layer.filters
    ratio = 1.0 if layer.filters_ratio is None else layer.filters_ratio
    return round_(stage_filters * Fraction(ratio), "filters x filters_ratio")


class LayerList:
    """Emits layer lists under one prefix; the numbering goes on across calls (a custom block's
    pre-activation and the rest of its branch are emitted separately)."""

    def __init__(self, net: NetworkBuilder, prefix: str, settings: Settings, block: BlockBuilder | None = None,
                 dense_initializer: g.InitializerName = "glorot_uniform") -> None:  # fmt: skip
        self.net, self.prefix, self.settings, self.block = net, prefix, settings, block
        self.dense_initializer = dense_initializer
        self.counter: Counter[str] = Counter()

    def emit(self, x: str, layers: Sequence[SpecLayer], origin: KeyPath, channels: int, start: int = 0) -> tuple[str, int]:
        """Add ``layers`` after ``x`` (whose channels are ``channels``); the layer list's item
        ``i`` is at ``(*origin, start + i)``. Returns the last node and its channels."""
        for i, layer in enumerate(layers, start):
            where = (*origin, i)
            name = self._name(SHORT[type(layer)])
            if isinstance(layer, ConvLayer):
                channels = self._conv_filters(layer, where)
                x = self.net.conv(name, x, where, self.settings, filters=channels, kernel=layer.kernel_size,
                                  stride=self._conv_stride(layer, where), padding=layer.padding, groups=layer.groups,
                                  bias=layer.bias, initializer=layer.initializer, kernel_l2=layer.kernel_l2)  # fmt: skip
            elif isinstance(layer, NormLayer):
                x = self.net.norm(name, x, where, self.settings, layer, zero_init=layer.zero_init)
            elif isinstance(layer, ActivationLayer):
                x = self.net.act(name, x, where, layer.function or self.settings.activation)
            elif isinstance(layer, DenseLayer):
                x = self._dense(name, x, where, layer)
            else:
                x = self._parameter_free(name, x, where, layer)
        return x, channels

    def count(self, layers: Sequence[SpecLayer]) -> None:
        """Number ``layers`` as if emitted (they were, by another call)."""
        self.counter.update(SHORT[type(layer)] for layer in layers)

    def _name(self, short: str) -> str:
        self.counter[short] += 1
        return f"{self.prefix}.{short}{self.counter[short]}"

    def _dense(self, name: str, x: str, where: KeyPath, layer: DenseLayer) -> str:
        kernel_l2 = self.settings.kernel_l2 if layer.kernel_l2 is None else layer.kernel_l2
        x = self.net.add(g.Dense(name, (x,), where, units=layer.units, use_bias=layer.bias,
                                 initializer=layer.initializer or self.dense_initializer, kernel_l2=kernel_l2))  # fmt: skip
        if layer.activation != "linear":
            x = self.net.act(self._name("act"), x, where, layer.activation)
        return x

    def _parameter_free(self, name: str, x: str, where: KeyPath, layer: SpecLayer) -> str:
        net = self.net
        if isinstance(layer, ZeroPadLayer):
            return net.add(g.ZeroPad(name, (x,), where, padding=explicit_padding(layer.padding)))
        if isinstance(layer, (MaxPoolLayer, AvgPoolLayer)):
            size = pair(layer.pool_size)
            strides = pair(layer.stride if layer.stride is not None else layer.pool_size)
            if isinstance(layer, MaxPoolLayer):
                return net.pool(g.MaxPool, name, x, where, size=size, strides=strides, padding=layer.padding)
            return net.pool(g.AvgPool, name, x, where, size=size, strides=strides, padding=layer.padding,
                            count_padding=layer.count_padding)  # fmt: skip
        if isinstance(layer, DropoutLayer):
            return net.add(g.Dropout(name, (x,), where, rate=layer.rate))
        if isinstance(layer, GlobalAvgPoolLayer):
            return net.add(g.GlobalAvgPool(name, (x,), where))
        if isinstance(layer, FlattenLayer):
            return net.add(g.Flatten(name, (x,), where))
        raise TypeError(f"unhandled layer {type(layer).__name__}")

    def _conv_filters(self, layer: ConvLayer, where: KeyPath) -> int:
        if self.block is None:
            if layer.filters is None:
                raise ExpansionError([Diagnostic("RS102", f"a {self.prefix} conv needs `filters`", key_path=(*where, "filters"))])
            if layer.filters_ratio is not None:
                raise ExpansionError([misplaced(where, "filters_ratio", "custom blocks")])
            return layer.filters
        if layer.filters is not None and layer.filters_ratio is not None:
            raise ExpansionError([Diagnostic("RS107", "give `filters` or `filters_ratio`, not both", key_path=where)])
        return conv_filters(layer, self.block.filters, Exact((*where, "filters_ratio")))

    def _conv_stride(self, layer: ConvLayer, where: KeyPath) -> int | list[int]:
        if layer.stride != "block":
            return layer.stride
        if self.block is None:
            raise ExpansionError([misplaced(where, "stride: block", "custom blocks")])
        return self.block.stride


def misplaced(where: KeyPath, option: str, allowed: str) -> Diagnostic:
    return Diagnostic("RS109", f"`{option}` is only meaningful in {allowed}", key_path=where)
