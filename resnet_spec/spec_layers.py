"""The settings cascade and the layers of stems, custom blocks and heads.

Settings cascade: ``defaults`` at the top, ``defaults`` on a stage or a custom block, then the
fields of a single layer; ``None`` always means "inherit".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .graph import InitializerName
from .spec_base import (
    PADDING_DOC,
    ActivationName,
    Channels,
    KernelSize,
    Padding,
    PadValue,
    Rate,
    SpecModel,
    StrideValue,
)

# --------------------------------------------------------------------------- settings cascade


class NormSettings(SpecModel):
    """Batch normalization. Every field is optional here; unset fields inherit."""

    running_stats_decay: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    """Weight of the old running statistic: running = decay * running + (1 - decay) * batch.
    Keras calls this `momentum` (default 0.99); PyTorch's `momentum` is 1 - decay (0.1 -> 0.9)."""
    epsilon: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    """Added to the variance before the square root (Keras 1e-3, PyTorch 1e-5, keras.applications 1.001e-5)."""
    running_variance: Literal["biased", "unbiased"] | None = None
    """Which batch variance the running variance accumulates: 'biased' (divide by n, as Keras)
    or 'unbiased' (divide by n - 1, as PyTorch). Normalization itself always uses the biased one."""
    center: bool | None = None
    """Learn a shift (beta)."""
    scale: bool | None = None
    """Learn a scale (gamma)."""


class LayerSettings(SpecModel):
    """Settings that cascade from `defaults` to stages, custom blocks and single layers."""

    norm: NormSettings | None = None
    activation: ActivationName | None = None
    initializer: InitializerName | None = None
    """Kernel initializer of convolutions. See docs/spec-language.md for the exact meaning of each name."""
    conv_bias: bool | None = None
    """Whether convolutions have a bias (Keras' default is true, torchvision uses false)."""
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    """L2 penalty added to the loss: kernel_l2 * sum(w ** 2) over conv and dense kernels (Keras' L2)."""
    padding: Padding | None = Field(default=None, description=PADDING_DOC)


class Defaults(LayerSettings):
    """Top-level defaults; what is not given here takes the built-in value shown in the docs."""


# --------------------------------------------------------------------------- layers


class ConvLayer(SpecModel):
    type: Literal["conv"]
    filters: Channels | None = None
    """Output channels. Inside a custom block it may be omitted (the stage's `filters`) or given as `filters_ratio`."""
    filters_ratio: Annotated[float, Field(gt=0.0, le=64.0)] | None = None
    """Custom blocks only: output channels as a fraction of the stage's `filters` (0.25 for a bottleneck's inner width)."""
    kernel_size: KernelSize | Annotated[list[KernelSize], Field(min_length=2, max_length=2)] = 3
    stride: StrideValue | Literal["block"] | Annotated[list[StrideValue], Field(min_length=2, max_length=2)] = 1
    """An integer, [height, width], or 'block' (custom blocks only: the stage's stride in the first block, 1 in the others)."""
    padding: Padding | None = Field(default=None, description=PADDING_DOC)
    groups: Annotated[int, Field(ge=1, le=65536)] = 1
    bias: bool | None = None
    initializer: InitializerName | None = None
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class NormLayer(NormSettings):
    type: Literal["norm"]
    zero_init: bool = False
    """Start gamma at zero (the block then starts as an identity)."""


class ActivationLayer(SpecModel):
    type: Literal["activation"]
    function: ActivationName | None = None
    """Defaults to the cascaded `activation`."""


class ZeroPadLayer(SpecModel):
    type: Literal["zero_pad"]
    padding: PadValue | Annotated[list[PadValue], Field(min_length=4, max_length=4)]
    """An integer for every side, or [top, bottom, left, right]."""


class PoolLayer(SpecModel):
    pool_size: KernelSize | Annotated[list[KernelSize], Field(min_length=2, max_length=2)] = 2
    stride: StrideValue | Annotated[list[StrideValue], Field(min_length=2, max_length=2)] | None = None
    """Defaults to the pool size."""
    padding: Padding = Field(default="valid", description=PADDING_DOC)


class MaxPoolLayer(PoolLayer):
    type: Literal["max_pool"]


class AvgPoolLayer(PoolLayer):
    type: Literal["avg_pool"]
    count_padding: bool = False
    """Divide by the whole window including padded cells (PyTorch's count_include_pad) instead of
    by the real cells only (TensorFlow)."""


class DropoutLayer(SpecModel):
    type: Literal["dropout"]
    rate: Rate


class GlobalAvgPoolLayer(SpecModel):
    type: Literal["global_avg_pool"]


class FlattenLayer(SpecModel):
    type: Literal["flatten"]


class DenseLayer(SpecModel):
    type: Literal["dense"]
    units: Channels
    activation: ActivationName | Literal["linear"] = "linear"
    bias: bool = True
    initializer: InitializerName | None = None
    """Defaults to the classifier's initializer."""
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


SpatialLayer = ConvLayer | NormLayer | ActivationLayer | ZeroPadLayer | MaxPoolLayer | AvgPoolLayer | DropoutLayer
StemLayer = Annotated[SpatialLayer, Field(discriminator="type")]
BlockLayer = Annotated[SpatialLayer, Field(discriminator="type")]
HeadLayer = Annotated[
    GlobalAvgPoolLayer | AvgPoolLayer | MaxPoolLayer | FlattenLayer | DenseLayer | NormLayer | ActivationLayer | DropoutLayer,
    Field(discriminator="type"),
]
