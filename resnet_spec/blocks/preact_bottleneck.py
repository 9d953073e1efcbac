"""``preact_bottleneck``: the 1x1 - 3x3 - 1x1 convolutions of ``bottleneck`` in the
pre-activation arrangement (He et al. 2016): nothing after the add."""

from __future__ import annotations

from typing import Literal

from .bottleneck import Bottleneck, BottleneckOptions
from .options import PreactStageOptions
from .units import PreActivated


class PreactBottleneckStage(BottleneckOptions, PreactStageOptions):
    block: Literal["preact_bottleneck"]
    """norm - act - conv1x1 - norm - act - conv3x3 - norm - act - conv1x1 - add."""


class PreactBottleneck(
    PreActivated, Bottleneck, name="preact_bottleneck", options=PreactBottleneckStage,
    summary="norm - act - conv1x1 - norm - act - conv3x3(groups) - norm - act - conv1x1 - [SE] - add(shortcut)",
):
    """``bottleneck`` in the pre-activation arrangement (see :class:`.units.PreActivated`)."""
