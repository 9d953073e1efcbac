"""Size budget: refuse absurd networks before allocating a single node, saying how big they
would have been.

Each block kind estimates its own branch with the code that builds it (the widths of
:meth:`~resnet_spec.blocks.kind.BlockKind.steps`, rounded up; a custom block's conv widths), in
exact integer and fraction arithmetic, so that even 10^12 filters or a depth of 10^9 cannot
overflow it; a projection and squeeze-excite are added for every block. It only has to be right
to an order of magnitude: after the shape pass :func:`check_exact` counts exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .blocks.kind import Place
from .blocks.registry import kind_of, view
from .diagnostics import Diagnostic, KeyPath, show_int
from .spec import AvgPoolLayer, ConvLayer, DenseLayer, MaxPoolLayer, NormLayer, ResNetSpec, StageOptions

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
        stage_params, stage_nodes, width = _stage(spec, stage, blocks, channels)
        nodes += stage_nodes
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


def _stage(spec: ResNetSpec, stage: StageOptions, blocks: int, channels: int) -> tuple[int, int, int]:
    """(parameters, nodes, output channels) of a stage: each kind's own estimate of its branch
    (the widths the expander builds, rounded up), plus a projection and squeeze-excite each."""
    params = nodes = 0
    for name, count in ((stage.first_block or stage.block, 1), (stage.block, blocks - 1)):
        if count:
            kind = kind_of(name)
            branch, branch_nodes, out = kind.estimate(Place(spec, name, view(stage, kind, name), channels, stage.stride))
            extra, extra_nodes = channels * out + 4 * out, 6  # projection (pool, conv, norm), drop path, add, act
            if stage.squeeze_excite is not None:
                extra, extra_nodes = extra + 2 * out * (out // stage.squeeze_excite.reduction + 1), extra_nodes + 6
            params += count * (branch + extra)
            nodes += count * (branch_nodes + extra_nodes)
            channels = out
    return params, nodes, channels


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
            params += k * k * channels * layer.filters + layer.filters
            channels = layer.filters
        elif isinstance(layer, NormLayer):
            params += 4 * channels
    return params, channels


def _head_params(spec: ResNetSpec, channels: int) -> int:
    stride = max(1, _total_stride(spec))
    spatial = -(-spec.input.height // stride) * -(-spec.input.width // stride)
    params, width = 0, channels
    for layer in spec.head.layers:
        if isinstance(layer, (AvgPoolLayer, MaxPoolLayer)):  # padding aside, a pool divides by its stride
            value = layer.stride if layer.stride is not None else layer.pool_size
            stride = value if isinstance(value, int) else max(value)
            spatial = max(1, spatial // (stride * stride))
        elif layer.type == "flatten":
            width *= spatial
        elif layer.type == "global_avg_pool":
            spatial = 1
        elif isinstance(layer, NormLayer):
            params += 4 * width
        elif isinstance(layer, DenseLayer):
            params += (width + 1) * layer.units
            width = layer.units
    return params + (width + 1) * (spec.classes or 0)  # a backbone has no classifier
