"""Custom blocks: a residual branch written as a list of layers under ``blocks:``, used by name.

A custom block *begins with a pre-activation* when the layers before its first conv are norm
and activation layers (at least one): a projection shortcut then reads their output when its
``source`` is ``preactivated`` (the default), as the built-in pre-activation kinds do. Its branch
*ends with a norm* when its last layer is a norm: ``zero_init_last_norm`` then starts that norm
at gamma = 0. Squeeze-and-excitation and stochastic depth apply to its output as to any block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field

from ..spec_base import SpecModel
from ..spec_layers import ActivationLayer, BlockLayer, ConvLayer, LayerSettings, NormLayer
from .builder import BlockBuilder
from .kind import BlockKind, Place, Step, Whole, rounded_up
from .layer_list import LayerList, conv_filters
from .options import (
    AnyShortcut,
    BlockName,
    PreactProjectionShortcut,
    PreactShortcut,
    PreactStageOptions,
    ZeroInitOption,
)

if TYPE_CHECKING:
    from ..spec import ResNetSpec

BUILTIN_NAMES = ("basic", "bottleneck", "preact_basic", "preact_bottleneck")


class CustomBlock(SpecModel):
    """A block declared as an explicit list of layers (the residual branch), for what the
    built-in kinds do not cover."""

    layers: Annotated[list[BlockLayer], Field(min_length=1, max_length=256)]
    shortcut: PreactShortcut | None = None
    """Defaults to the stage's shortcut (`source` applies if the block begins with a pre-activation)."""
    activation_after_add: bool = True
    """False for pre-activation designs (nothing after the add)."""
    defaults: LayerSettings | None = None


def _not_a_builtin(schema: dict[str, object]) -> None:
    schema["not"] = {"enum": list(BUILTIN_NAMES)}


class CustomStage(ZeroInitOption, PreactStageOptions):
    block: Annotated[BlockName, Field(json_schema_extra=_not_a_builtin)]
    """The name of a block under `blocks`."""
    shortcut: PreactShortcut = PreactProjectionShortcut()
    """Used where the block changes the shape, unless the block has its own (`source` applies
    if the block begins with a pre-activation)."""


def preactivation_length(block: CustomBlock) -> int:
    """How many layers form the block's pre-activation (0 if it has none)."""
    for i, layer in enumerate(block.layers):
        if isinstance(layer, ConvLayer):
            return i
        if not isinstance(layer, (NormLayer, ActivationLayer)):
            return 0
    return 0


class Custom(
    BlockKind, name="custom", options=CustomStage,
    summary="the `layers` of the named block - [SE] - add(shortcut) - act unless `activation_after_add: false`",
):
    preactivated = True  # may begin with one; begins_with_preactivation says whether it does
    refusals: ClassVar[dict[str, str]] = {
        "groups": "a custom block gives each conv its own `groups`",
        "width_per_group": "a custom block gives each conv its own `filters` or `filters_ratio`",
        "bottleneck_ratio": "a custom block gives each conv its own `filters` or `filters_ratio`",
        "width_multiplier": "a custom block gives each conv its own `filters` or `filters_ratio`",
        "stride_placement": "a custom block places its stride with `stride: block` on a conv",
        "dropout_between_convs": "a custom block lists its dropout layers",
        "layer_bias": "a custom block gives each conv its own `bias`",
    }

    def depth(self, spec: ResNetSpec, name: str) -> int:
        return sum(isinstance(layer, ConvLayer) for layer in spec.blocks[name].layers)

    def steps(self, place: Place, whole: Whole) -> list[Step]:
        raise TypeError("a custom block is a layer list, not steps")

    def out_channels(self, place: Place, whole: Whole) -> int:
        channels = place.in_channels
        for i, layer in enumerate(place.spec.blocks[place.name].layers):
            if isinstance(layer, ConvLayer):
                where = ("blocks", place.name, "layers", i, "filters_ratio")
                channels = conv_filters(layer, place.options.filters, whole.at(where))
        return channels

    def estimate(self, place: Place) -> tuple[int, int, int]:
        block = place.spec.blocks[place.name]
        cin, params = place.in_channels, 0
        for layer in block.layers:
            if isinstance(layer, ConvLayer):
                filters = conv_filters(layer, place.options.filters, rounded_up)
                k = layer.kernel_size if isinstance(layer.kernel_size, int) else max(layer.kernel_size)
                params += k * k * cin * filters // max(layer.groups, 1)
                cin = filters
        return params, len(block.layers), cin

    def activation_after_add(self, spec: ResNetSpec, name: str) -> bool:
        return spec.blocks[name].activation_after_add

    def begins_with_preactivation(self, spec: ResNetSpec, name: str) -> bool:
        return preactivation_length(spec.blocks[name]) > 0

    def ends_with_norm(self, spec: ResNetSpec, name: str) -> bool:
        return isinstance(spec.blocks[name].layers[-1], NormLayer)

    def shortcut(self, b: BlockBuilder) -> AnyShortcut:
        own = b.spec.blocks[b.name].shortcut
        return own if own is not None else b.options.shortcut

    def preactivation(self, b: BlockBuilder, x: str) -> str | None:
        block = b.spec.blocks[b.name]
        count = preactivation_length(block)
        if not count:
            return None
        return _layers(b).emit(x, block.layers[:count], ("blocks", b.name, "layers"), b.in_channels)[0]

    def branch(self, b: BlockBuilder, x: str) -> str:
        block = b.spec.blocks[b.name]
        count = preactivation_length(block)
        layers = _layers(b)
        layers.count(block.layers[:count])  # one numbering across the pre-activation and the rest
        return layers.emit(x, block.layers[count:], ("blocks", b.name, "layers"), b.in_channels, count)[0]


def _layers(b: BlockBuilder) -> LayerList:
    return LayerList(b.net, b.prefix, b.settings.over(b.spec.blocks[b.name].defaults), b)
