"""The spec language as pydantic v2 models: the typed spec, and the source of ``spec/*.schema.json``.

The models live where their meaning is: :mod:`.spec_base` (the strict base model, number types),
:mod:`.spec_layers` (the settings cascade and the layers), :mod:`.blocks` (one stage model per
block kind, shortcuts), :mod:`.spec_training` (the training section). This module holds the
top of the document and names every model, so ``from resnet_spec.spec import X`` finds them all.

The architecture part (everything but ``name``, ``description`` and ``training``) is what the
graph and the architecture hash are built from; ``training`` is validated here and used by the
training harness.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .blocks.custom import BUILTIN_NAMES, CustomBlock, CustomStage
from .blocks.options import (
    BlockName,
    IdentityShortcut,
    PreactProjectionShortcut,
    ProjectionShortcut,
    ShortcutKind,
    SqueezeExcite,
    StageOptions,
    StochasticDepth,
    ZeroPadShortcut,
)
from .blocks.registry import Stage
from .graph import InitializerName
from .spec_base import (
    PADDING_DOC,
    SPEC_VERSION,
    ActivationName,
    Channels,
    KernelSize,
    Padding,
    PadValue,
    Rate,
    SpecModel,
    StrideValue,
)
from .spec_layers import (
    ActivationLayer,
    AvgPoolLayer,
    BlockLayer,
    ConvLayer,
    Defaults,
    DenseLayer,
    DropoutLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    HeadLayer,
    LayerSettings,
    MaxPoolLayer,
    NormLayer,
    NormSettings,
    StemLayer,
    ZeroPadLayer,
)
from .spec_training import (
    Augmentation,
    ConstantSchedule,
    CosineSchedule,
    Execution,
    Loss,
    Optimizer,
    PiecewiseSchedule,
    Preprocessing,
    RandomResizedCrop,
    Resize,
    Schedule,
    Training,
    Warmup,
)

BUILTIN_BLOCKS = BUILTIN_NAMES


class Classifier(SpecModel):
    """The final dense layer; its size is the number of classes."""

    bias: bool = True
    initializer: InitializerName = "glorot_uniform"
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


FeatureRef = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")]
"""A feature output: `stem`, `stageN` (the output of stage N, counted from 1) or a graph node's name."""
OutputName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class Head(SpecModel):
    """A classifier head (pooling layers, the classifier) or, with `features`, a backbone's outputs."""

    # Mutable defaults are safe in pydantic models (copied per instance); ruff cannot see that
    # SpecModel is one, as it is defined in another module.
    layers: Annotated[list[HeadLayer], Field(max_length=256)] = [GlobalAvgPoolLayer(type="global_avg_pool")]  # noqa: RUF012
    classifier: Classifier = Classifier()
    output: Literal["logits", "softmax"] = "logits"
    """logits: the model returns raw scores and the loss applies the softmax (recommended);
    softmax: the model ends with a softmax."""
    features: (
        Annotated[list[FeatureRef], Field(min_length=1, max_length=64)]
        | Annotated[dict[OutputName, FeatureRef], Field(min_length=1, max_length=64)]
        | None
    ) = None
    """A backbone: the model returns these feature maps instead of class scores, as named outputs.
    A list of references (`stem`, `stageN`, or a node name such as `stage2.block0.conv1`), each
    output named as written, or a mapping output name -> reference (`{c2: stage1, c3: stage2}`).
    Takes the place of `layers`, `classifier` and `output`, and of the top-level `classes`."""

    def named_features(self) -> dict[str, str]:
        """Output name -> reference, in the order written (empty for a classifier head)."""
        if self.features is None:
            return {}
        return dict(self.features) if isinstance(self.features, dict) else {ref: ref for ref in self.features}


class InputShape(SpecModel):
    height: Annotated[int, Field(ge=1, le=16384)]
    width: Annotated[int, Field(ge=1, le=16384)]
    channels: Annotated[int, Field(ge=1, le=4096)]


class ResNetSpec(SpecModel):
    """A residual network: input, stem, stages, head, and optionally how to train it."""

    version: Literal[1]
    """Version of the spec language; this release reads version 1."""
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    input: InputShape
    classes: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Number of classes (the classifier's size). Required, unless the head is a backbone's (`head.features`)."""
    depth: Annotated[int, Field(ge=1)] | None = None
    """Declared depth: convolutions on the main path (stem and blocks, not shortcuts) plus the
    classifier. Checked against the structure; stages without `blocks` get their count from it."""
    defaults: Defaults = Defaults()
    blocks: dict[BlockName, CustomBlock] = {}  # noqa: RUF012 (see Head.layers)
    """Custom block kinds, referenced by name from stages."""
    stem: Annotated[list[StemLayer], Field(max_length=256)] = []  # noqa: RUF012
    stages: Annotated[list[Stage], Field(min_length=1, max_length=64)]
    """One model per block kind: a stage has the options of its `block` (see docs/spec-language.md)."""
    stochastic_depth: StochasticDepth | None = None
    """A drop-path schedule over every block of the network (instead of per-stage rates)."""
    head: Head = Head()
    training: Training | None = None


__all__ = [
    "BUILTIN_BLOCKS", "PADDING_DOC", "SPEC_VERSION", "ActivationLayer", "ActivationName", "Augmentation",
    "AvgPoolLayer", "BlockLayer", "BlockName", "Channels", "Classifier", "ConstantSchedule", "ConvLayer",
    "CosineSchedule", "CustomBlock", "CustomStage", "Defaults", "DenseLayer", "DropoutLayer", "Execution",
    "FeatureRef", "FlattenLayer", "GlobalAvgPoolLayer", "Head", "HeadLayer", "IdentityShortcut", "InputShape", "KernelSize",
    "LayerSettings", "Loss", "MaxPoolLayer", "NormLayer", "NormSettings", "Optimizer", "OutputName", "PadValue", "Padding",
    "PiecewiseSchedule", "PreactProjectionShortcut", "Preprocessing", "ProjectionShortcut", "RandomResizedCrop", "Rate",
    "ResNetSpec", "Resize", "Schedule", "ShortcutKind", "SqueezeExcite", "Stage", "StageOptions", "StemLayer", "StochasticDepth",
    "StrideValue", "Training", "Warmup", "ZeroPadLayer", "ZeroPadShortcut",
]  # fmt: skip
