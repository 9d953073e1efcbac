"""``preact_basic``: the two 3x3 convolutions of ``basic`` in the pre-activation arrangement
(He et al. 2016, "Identity Mappings in Deep Residual Networks"): nothing after the add."""

from __future__ import annotations

from typing import ClassVar, Literal

from .basic import Basic, BasicOptions
from .builder import BlockBuilder
from .options import PreactProjectionShortcut, PreactShortcut, StageOptions
from .units import pre_activation, preactivate


class PreactBasicStage(BasicOptions, StageOptions):
    block: Literal["preact_basic"]
    """norm - act - conv3x3 - norm - act - conv3x3 - add."""
    shortcut: PreactShortcut = PreactProjectionShortcut()
    """Used where the block changes the shape (see `every_block`, `same_channels` and `source`)."""


class PreactBasic(Basic):
    name = "preact_basic"
    options: ClassVar[type[StageOptions]] = PreactBasicStage
    summary = "norm - act - conv3x3(stride) - norm - act - [dropout] - conv3x3 - [SE] - add(shortcut)"
    preactivated = True
    refusals: ClassVar[dict[str, str]] = {
        **{k: v for k, v in Basic.refusals.items() if k != "source"},
        "zero_init_last_norm": "a pre-activation block ends in a conv, not a norm",
    }

    def preactivation(self, b: BlockBuilder, x: str) -> str:
        return preactivate(b, x)

    def branch(self, b: BlockBuilder, x: str) -> str:
        return pre_activation(b, x, self.steps(b.place, b.whole))
