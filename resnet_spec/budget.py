"""Size budget: refuse absurd networks before allocating a single node, saying how big they
would have been.

The estimate is an upper bound of the usual kind (every block's convolutions at full width,
three 3x3 convolutions per block), computed with Python integers so that even 10^12 filters or
a depth of 10^9 cannot overflow it. It only has to be right to an order of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .diagnostics import Diagnostic, KeyPath, show_int
from .spec import ConvLayer, DenseLayer, ResNetSpec

MAX_BLOCKS = 20_000
MAX_NODES = 500_000
MAX_PARAMS = 4_000_000_000


def _rough(value: int) -> str:
    return show_int(value, exact_digits=4)  # an estimate: three significant digits say enough


@dataclass(frozen=True)
class Estimate:
    blocks: int
    nodes: int
    params: int
    culprit: KeyPath  # where the size comes from

    @property
    def too_large(self) -> bool:
        return self.blocks > MAX_BLOCKS or self.nodes > MAX_NODES or self.params > MAX_PARAMS

    def describe(self) -> str:
        gib = self.params * 4 // 2**30
        return (
            f"{show_int(self.blocks)} blocks, about {_rough(self.nodes)} graph nodes and roughly "
            f"{_rough(self.params)} parameters (about {_rough(gib)} GiB of float32 weights)"
        )


def estimate(spec: ResNetSpec, counts: tuple[int, ...]) -> Estimate:
    params, channels = _stem_params(spec)
    nodes = len(spec.stem) + 4 + len(spec.head.layers)
    biggest = -1
    culprit: KeyPath = ("stages",)
    for i, (stage, blocks) in enumerate(zip(spec.stages, counts)):
        block_params, block_nodes, width = _block(spec, stage, channels)
        stage_params = blocks * block_params
        nodes += blocks * block_nodes
        if stage_params > biggest:
            biggest = stage_params
            culprit = ("stages", i, "blocks") if blocks > MAX_BLOCKS // 4 else ("stages", i, "filters")
        params += stage_params
        channels = width
    params += _head_params(spec, channels)
    total_blocks = sum(counts)
    if (total_blocks > MAX_BLOCKS or nodes > MAX_NODES) and spec.depth is not None:
        culprit = ("depth",)
    return Estimate(total_blocks, nodes, params, culprit)


def check(spec: ResNetSpec, counts: tuple[int, ...]) -> list[Diagnostic]:
    found = estimate(spec, counts)
    if not found.too_large:
        return []
    return [
        Diagnostic(
            "RS207",
            f"the network would have {found.describe()}; limits are {MAX_BLOCKS:,} blocks, "
            f"{MAX_NODES:,} nodes and {MAX_PARAMS:.0e} parameters",
            hint="check `depth`, `blocks`, `filters` and the width settings: nothing was allocated",
            key_path=found.culprit,
        )
    ]


def check_exact(params: int, nodes: int) -> list[Diagnostic]:
    """After shape analysis the counts are exact (the graph holds shapes, not weights): the
    estimate is an upper bound of the usual kind, and this catches any gap in it before a backend
    allocates anything."""
    if params <= MAX_PARAMS and nodes <= MAX_NODES:
        return []
    return [
        Diagnostic(
            "RS207",
            f"the network would have {show_int(nodes)} graph nodes and {show_int(params)} parameters "
            f"(about {show_int(params * 4 // 2**30)} GiB of float32 weights); limits are "
            f"{MAX_NODES:,} nodes and {MAX_PARAMS:.0e} parameters",
            hint="check `depth`, `blocks`, `filters` and the width settings: nothing was allocated",
            key_path=("stages",),
        )
    ]


def _block(spec: ResNetSpec, stage: Any, channels: int) -> tuple[int, int, int]:
    """(parameters, nodes, output channels) of one block, an over-estimate of the usual kind."""
    kinds = {stage.block, stage.first_block or stage.block}
    custom = [spec.blocks[k] for k in kinds if k in spec.blocks]
    # Fractions, not floats: a filter count may have hundreds of digits.
    multiplier = Fraction(max(stage.width_multiplier, 1))
    width = max(1, int(stage.filters * multiplier))
    inner = width
    if stage.width_per_group is not None:
        inner = int(stage.groups * stage.width_per_group * multiplier)
    elif any("bottleneck" in kind for kind in kinds):
        inner = max(1, int(stage.filters / Fraction(stage.bottleneck_ratio) * multiplier))
    groups = max(stage.groups, 1)
    params = 2 * inner * max(width, channels) + 9 * inner * inner // groups + 18 * width * max(width, channels)
    nodes = 16
    for block in custom:
        cin, block_params = channels, 0
        for layer in block.layers:
            if isinstance(layer, ConvLayer):
                filters = layer.filters or max(1, int(stage.filters * Fraction(layer.filters_ratio or 1)))
                k = layer.kernel_size if isinstance(layer.kernel_size, int) else max(layer.kernel_size)
                block_params += k * k * cin * filters // max(layer.groups, 1)
                cin = filters
        params = max(params, block_params)
        nodes = max(nodes, len(block.layers) + 6)
    return params, nodes, width


def _total_stride(spec: ResNetSpec) -> int:
    stride = 1
    for layer in spec.stem:
        value = getattr(layer, "stride", 1)
        if isinstance(layer, (ConvLayer,)) or layer.type in ("max_pool", "avg_pool"):
            value = value if value is not None else getattr(layer, "pool_size", 1)
            stride *= value if isinstance(value, int) else 1
    for stage in spec.stages:
        stride *= stage.stride
    return stride


def _stem_params(spec: ResNetSpec) -> tuple[int, int]:
    params, channels = 0, spec.input.channels
    for layer in spec.stem:
        if isinstance(layer, ConvLayer) and layer.filters:
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else max(layer.kernel_size)
            params += k * k * channels * layer.filters
            channels = layer.filters
    return params, channels


def _head_params(spec: ResNetSpec, channels: int) -> int:
    stride = max(1, _total_stride(spec))
    spatial = -(-spec.input.height // stride) * -(-spec.input.width // stride)
    params, width = 0, channels
    for layer in spec.head.layers:
        if layer.type == "flatten":
            width *= spatial
        elif layer.type == "global_avg_pool":
            spatial = 1
        elif isinstance(layer, DenseLayer):
            params += width * layer.units
            width = layer.units
    return params + width * spec.classes
