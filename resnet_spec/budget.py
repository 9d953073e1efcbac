"""Size budget: refuse absurd networks before allocating a single node, saying how big they
would have been.

The estimate is an upper bound of the usual kind (every block's convolutions at full width,
three 3x3 convolutions per block), computed with Python integers so that even 10^12 filters or
a depth of 10^9 cannot overflow it. It only has to be right to an order of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Diagnostic, KeyPath
from .spec import ConvLayer, DenseLayer, ResNetSpec

MAX_BLOCKS = 20_000
MAX_PARAMS = 4_000_000_000


@dataclass(frozen=True)
class Estimate:
    blocks: int
    params: int
    culprit: KeyPath  # where the size comes from

    @property
    def gib(self) -> float:
        return self.params * 4 / 2**30

    @property
    def too_large(self) -> bool:
        return self.blocks > MAX_BLOCKS or self.params > MAX_PARAMS

    def describe(self) -> str:
        return (
            f"{self.blocks:,} blocks and roughly {self.params:.3g} parameters "
            f"(about {self.gib:.3g} GiB of float32 weights)"
        )


def estimate(spec: ResNetSpec, counts: tuple[int, ...]) -> Estimate:
    params, channels = _stem_params(spec)
    biggest = -1
    culprit: KeyPath = ("stages",)
    for i, (stage, blocks) in enumerate(zip(spec.stages, counts)):
        width = int(stage.filters * max(stage.width_multiplier, 1.0))
        stage_params = 9 * channels * width + blocks * (27 * width * width // max(stage.groups, 1))
        if stage_params > biggest:
            biggest = stage_params
            culprit = ("stages", i, "filters") if width * width > blocks else ("stages", i, "blocks")
        params += stage_params
        channels = width
    params += _head_params(spec, channels)
    total_blocks = sum(counts)
    if total_blocks > MAX_BLOCKS and spec.depth is not None:
        culprit = ("depth",)
    return Estimate(total_blocks, params, culprit)


def check(spec: ResNetSpec, counts: tuple[int, ...]) -> list[Diagnostic]:
    found = estimate(spec, counts)
    if not found.too_large:
        return []
    return [
        Diagnostic(
            "RS207",
            f"the network would have {found.describe()}; limits are {MAX_BLOCKS:,} blocks and {MAX_PARAMS:.0e} parameters",
            hint="check `depth`, `blocks` and `filters`: nothing was allocated",
            key_path=found.culprit,
        )
    ]


def _stem_params(spec: ResNetSpec) -> tuple[int, int]:
    params, channels = 0, spec.input.channels
    for layer in spec.stem:
        if isinstance(layer, ConvLayer) and layer.filters:
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else max(layer.kernel_size)
            params += k * k * channels * layer.filters
            channels = layer.filters
    return params, channels


def _head_params(spec: ResNetSpec, channels: int) -> int:
    params, width = 0, channels
    for layer in spec.head.layers:
        if isinstance(layer, DenseLayer):
            params += width * layer.units
            width = layer.units
    return params + width * spec.classes
