"""The options every stage has, and the shortcut models.

A stage is one pydantic model per block kind (the union in :mod:`.registry`, told apart by
``block:``): :class:`StageOptions` holds the fields every kind has, each kind's module adds its
own, so the JSON Schema gives each kind exactly its fields. Shortcuts are a union told apart by
``kind:`` in the same way: parameter-free kinds (``identity``, ``zero_pad``) have no other field,
projections have their convolution's settings, and only the projections of blocks that can
begin with a pre-activation have ``source``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag

from ..spec_base import Channels, Rate, SpecModel, StrideValue
from ..spec_layers import LayerSettings

BlockName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class SqueezeExcite(SpecModel):
    """Squeeze-and-excitation on the residual branch's output, before the add (Hu et al. 2018):
    global average pool, 1x1 conv to channels / reduction, activation, 1x1 conv back, sigmoid,
    channel-wise scale."""

    reduction: Annotated[int, Field(ge=1, le=1024)] = 16
    """Squeeze width = block output channels / reduction."""


# --------------------------------------------------------------------------- shortcuts

ShortcutKind = Literal["identity", "zero_pad", "projection", "avg_pool_projection"]
PROJECTION_KINDS = ("projection", "avg_pool_projection")


class IdentityShortcut(SpecModel):
    """The input itself. Where a block changes the shape this is an error (RS201) with a fix."""

    kind: Literal["identity"]


class ZeroPadShortcut(SpecModel):
    """The paper's option A, without parameters: every stride-th row and column of the block
    input, then zero channels, half before and half after (16 -> 32: 8 and 8)."""

    kind: Literal["zero_pad"]


class ProjectionShortcut(SpecModel):
    """A 1x1 convolution with the block's stride where the block changes the shape (option B)."""

    kind: Literal["projection", "avg_pool_projection"] = "projection"
    """projection: the 1x1 convolution with the block's stride; avg_pool_projection: stride x
    stride average pooling (real cells only), then the 1x1 convolution (ResNet-D)."""
    norm: bool = True
    """Batch norm after the projection convolution."""
    bias: bool | None = None
    """Bias on the projection convolution; defaults to the cascaded `conv_bias`."""
    every_block: bool = False
    """Project in every block, also where nothing changes (the paper's option C)."""
    same_channels: Literal["projection", "subsample"] = "projection"
    """A block that strides but keeps its channel count: projection (the 1x1 convolution) or
    subsample (every stride-th row and column of the block input, no parameters; Keras' ResNet
    v2 `MaxPooling2D(1, strides)` in the last block of a stack)."""
    order: Literal["branch_first", "shortcut_first"] = "branch_first"
    """Which path is written first: its weights come first in both backends (PyTorch's
    `parameters()`, Keras' `get_weights()` among layers of equal depth) and it is the add's first
    operand. branch_first: torchvision and most hand-written code (`Add()([x, shortcut])`);
    shortcut_first: keras.applications (`Add()([shortcut, x])`)."""


class PreactProjectionShortcut(ProjectionShortcut):
    """A projection of a block that can begin with a pre-activation (norm and activation before
    its first convolution)."""

    source: Literal["preactivated", "block_input"] = "preactivated"
    """What the projection reads: the normalized and activated input (the ResNet v2 paper,
    keras.applications' ResNet50V2) or the raw block input (the Keras CIFAR-10 ResNet v2 example)."""


def _from_name(value: Any) -> Any:
    # `shortcut: zero_pad` is shorthand for `shortcut: {kind: zero_pad}`.
    return {"kind": value} if isinstance(value, str) else value


def kind(value: Any) -> str:
    """The shortcut's kind (named so: pydantic shows this function's name as the discriminator)."""
    if isinstance(value, dict):
        return str(value.get("kind", "projection"))
    return str(getattr(value, "kind", "projection"))


def _accepts_name(schema: dict[str, Any]) -> None:
    # The validator accepts a bare kind name as shorthand; say so in the schema for editors.
    default = schema.pop("default", None)
    one_of = schema.pop("oneOf")
    schema["anyOf"] = [{"enum": list(get_args(ShortcutKind))}, {"oneOf": one_of}]
    if default is not None:
        schema["default"] = default


if TYPE_CHECKING:
    Shortcut = IdentityShortcut | ZeroPadShortcut | ProjectionShortcut
    PreactShortcut = IdentityShortcut | ZeroPadShortcut | PreactProjectionShortcut
else:  # the same unions as pydantic reads them: told apart by `kind`, a bare kind name accepted

    def _shortcut_union(projection):
        tagged = Annotated[
            Annotated[IdentityShortcut, Tag("identity")]
            | Annotated[ZeroPadShortcut, Tag("zero_pad")]
            | Annotated[projection, Tag("projection")]
            | Annotated[projection, Tag("avg_pool_projection")],
            Discriminator(kind),
        ]
        return Annotated[tagged, BeforeValidator(_from_name), Field(json_schema_extra=_accepts_name)]

    Shortcut = _shortcut_union(ProjectionShortcut)
    PreactShortcut = _shortcut_union(PreactProjectionShortcut)
AnyShortcut = IdentityShortcut | ZeroPadShortcut | ProjectionShortcut


def shortcut_models(preact: bool) -> dict[str, type[BaseModel]]:
    """{shortcut kind: its model}: what the hints of misplaced shortcut options look in."""
    projection = PreactProjectionShortcut if preact else ProjectionShortcut
    return {"identity": IdentityShortcut, "zero_pad": ZeroPadShortcut, **dict.fromkeys(PROJECTION_KINDS, projection)}


# --------------------------------------------------------------------------- stage options


class StageOptions(SpecModel):
    """Options of a stage whatever its block kind. A kind's model lists this class last among
    its bases: pydantic collects fields from the last base first, so these come first."""

    block: str
    """A built-in kind (basic, bottleneck, preact_basic, preact_bottleneck) or the name of a block under `blocks`."""
    first_block: BlockName | None = None
    """Kind of the stage's first block when it differs from the others. It takes the stage's
    options that both kinds have; options only its own kind has keep their defaults."""
    blocks: Annotated[int, Field(ge=1)] | None = None
    """Number of blocks; may be left out when the top-level `depth` determines it."""
    filters: Channels
    """Output channels of every block in the stage (of a custom block: what its convs' `filters` and `filters_ratio` refer to)."""
    stride: StrideValue = 1
    """Stride of the stage's strided block (see `stride_block`); the other blocks have stride 1."""
    stride_block: Literal["first", "last"] = "first"
    """Which block carries the stride: the first (the ResNet papers, torchvision) or the last
    (keras.applications' ResNet v2: `stack_residual_blocks_v2` strides its last block)."""
    shortcut: Shortcut = ProjectionShortcut()
    """Used where the block changes the shape (see `every_block` and `same_channels`)."""
    squeeze_excite: SqueezeExcite | None = None
    """Squeeze-and-excitation on each block's residual branch, before the add (`{reduction: 16}`)."""
    stochastic_depth_rate: Rate = 0.0
    """Probability of dropping each block's residual branch during training (the whole stage;
    the top-level `stochastic_depth` gives a schedule over the network instead)."""
    defaults: LayerSettings | None = None
    """The settings cascade for this stage's layers (norm, activation, initializer, conv_bias, kernel_l2, padding)."""


class PreactStageOptions(StageOptions):
    """Options of a stage whose blocks may begin with a pre-activation: their projections have `source`."""

    shortcut: PreactShortcut = PreactProjectionShortcut()
    """Used where the block changes the shape (see `every_block`, `same_channels` and `source`)."""


class ZeroInitOption(SpecModel):
    zero_init_last_norm: bool = False
    """Start the batch norm that ends the residual branch at gamma = 0 (the block then starts as
    an identity: Goyal et al. 2017, torchvision's zero_init_residual)."""


class StochasticDepth(SpecModel):
    """Stochastic depth over the whole network (timm's `drop_path_rate`)."""

    rate: Annotated[float, Field(gt=0.0, lt=1.0)]
    """The largest drop probability."""
    schedule: Literal["linear", "constant"] = "linear"
    """linear: block i of N (counted over all stages from 0) drops with rate * i / (N - 1), as
    timm's ResNet does; constant: every block drops with `rate`."""
