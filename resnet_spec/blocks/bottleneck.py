"""``bottleneck``: 1x1 - 3x3 - 1x1 convolutions (He et al. 2015), the post-activation
arrangement; the 3x3 may be grouped (ResNeXt) and widened (Wide ResNet)."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..spec_base import SpecModel
from .basic import BasicLayerBias
from .builder import BlockBuilder, fail
from .kind import Place, Step, Whole
from .options import StageOptions, ZeroInitOption
from .units import PostActivated


class BottleneckLayerBias(BasicLayerBias):
    conv3: bool | None = None


class BottleneckOptions(SpecModel):
    """The options of the three-conv kinds (bottleneck, preact_bottleneck)."""

    stride_placement: Literal["first_1x1", "3x3"] = "3x3"
    """Which conv strides: the first 1x1 (original ResNet, Keras' ResNet50) or the 3x3
    (torchvision's "v1.5", Keras' ResNet v2)."""
    bottleneck_ratio: Annotated[float, Field(gt=0.0, le=64.0)] = 4.0
    """Output channels / inner channels (give this or `width_per_group`)."""
    groups: Annotated[int, Field(ge=1, le=65536)] = 1
    """Groups of the 3x3 convolution (ResNeXt cardinality)."""
    width_per_group: Annotated[int, Field(ge=1, le=65536)] | None = None
    """ResNeXt: inner width = groups * width_per_group (instead of `bottleneck_ratio`)."""
    width_multiplier: Annotated[float, Field(gt=0.0, le=64.0)] = 1.0
    """Wide ResNet (torchvision's wide_resnet50_2): multiplies the inner width."""
    layer_bias: BottleneckLayerBias = BottleneckLayerBias()
    """Bias of single convolutions by name (`conv1`, `conv2`, `conv3`), over the cascaded
    `conv_bias` (keras.applications' ResNet50V2: `{conv1: false, conv2: false}`)."""


class BottleneckStage(ZeroInitOption, BottleneckOptions, StageOptions):
    block: Literal["bottleneck"]
    """conv1x1 - norm - act - conv3x3 - norm - act - conv1x1 - norm - add - act."""


def three_convs(place: Place, whole: Whole) -> list[Step]:
    options = place.options
    assert isinstance(options, BottleneckOptions)
    multiplier = Fraction(options.width_multiplier)
    if options.width_per_group is not None:
        raw, what = options.groups * options.width_per_group * multiplier, "groups x width_per_group x width_multiplier"
    else:
        raw, what = options.filters / Fraction(options.bottleneck_ratio) * multiplier, "filters / bottleneck_ratio x width_multiplier"
    inner = whole(raw, what)
    first, middle = (place.stride, 1) if options.stride_placement == "first_1x1" else (1, place.stride)
    return [Step(1, first, inner), Step(3, middle, inner, options.groups), Step(1, 1, options.filters)]


class Bottleneck(
    PostActivated, name="bottleneck", options=BottleneckStage,
    summary="conv1x1 - norm - act - conv3x3(groups) - norm - act - conv1x1 - norm - [SE] - add(shortcut) - act", convs=3,
):
    refusals: ClassVar[dict[str, str]] = {
        "dropout_between_convs": "a bottleneck block has no dropout between its convs",
        "source": "a bottleneck block has no pre-activated input",
    }

    def steps(self, place: Place, whole: Whole) -> list[Step]:
        return three_convs(place, whole)

    def built_steps(self, b: BlockBuilder) -> list[Step]:
        steps = super().built_steps(b)
        middle = steps[1]  # the grouped 3x3 (RS206 here says where: the stage's `groups`)
        if middle.width % middle.groups:
            fail("RS206", f"inner width {middle.width} is not divisible by groups={middle.groups}", (*b.origin, "groups"))
        return steps
