"""``preact_basic``: the two 3x3 convolutions of ``basic`` in the pre-activation arrangement
(He et al. 2016, "Identity Mappings in Deep Residual Networks"): nothing after the add."""

from __future__ import annotations

from typing import Literal

from .basic import Basic, BasicOptions
from .options import PreactStageOptions
from .units import PreActivated


class PreactBasicStage(BasicOptions, PreactStageOptions):
    block: Literal["preact_basic"]
    """norm - act - conv3x3 - norm - act - conv3x3 - add."""


class PreactBasic(
    PreActivated, Basic, name="preact_basic", options=PreactBasicStage,
    summary="norm - act - conv3x3(stride) - norm - act - [dropout] - conv3x3 - [SE] - add(shortcut)",
):
    """``basic`` in the pre-activation arrangement (see :class:`.units.PreActivated`)."""
