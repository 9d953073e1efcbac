"""``basic``: two 3x3 convolutions (He et al. 2015), the post-activation arrangement."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..spec_base import Rate, SpecModel
from .kind import Place, Step, Whole
from .options import StageOptions, ZeroInitOption
from .units import PostActivated


class BasicLayerBias(SpecModel):
    """Bias of single convolutions of the block, by name, over the cascaded `conv_bias`."""

    conv1: bool | None = None
    conv2: bool | None = None


class BasicOptions(SpecModel):
    """The options of the two-conv kinds (basic, preact_basic)."""

    width_multiplier: Annotated[float, Field(gt=0.0, le=64.0)] = 1.0
    """Wide ResNet (Zagoruyko and Komodakis 2016): multiplies the width of both convolutions,
    and with it the block's output channels."""
    dropout_between_convs: Rate = 0.0
    """Dropout between the two convolutions (Wide ResNet)."""
    layer_bias: BasicLayerBias = BasicLayerBias()
    """Bias of single convolutions by name (`conv1`, `conv2`), over the cascaded `conv_bias`."""


class BasicStage(ZeroInitOption, BasicOptions, StageOptions):
    block: Literal["basic"] = "basic"
    """conv3x3 - norm - act - conv3x3 - norm - add - act."""


def two_convs(place: Place, whole: Whole) -> list[Step]:
    options = place.options
    assert isinstance(options, BasicOptions)
    width = whole(Fraction(options.filters) * Fraction(options.width_multiplier), "filters x width_multiplier")
    return [Step(3, place.stride, width), Step(3, 1, width, dropout_before=options.dropout_between_convs)]


class Basic(
    PostActivated, name="basic", options=BasicStage,
    summary="conv3x3(stride) - norm - act - [dropout] - conv3x3 - norm - [SE] - add(shortcut) - act", convs=2,
):
    refusals: ClassVar[dict[str, str]] = {
        "groups": "a basic block has one conv width",
        "width_per_group": "a basic block has one conv width",
        "bottleneck_ratio": "a basic block has no inner width",
        "stride_placement": "a basic block always strides in its first conv",
        "source": "a basic block has no pre-activated input",
    }

    def steps(self, place: Place, whole: Whole) -> list[Step]:
        return two_convs(place, whole)
