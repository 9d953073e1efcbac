"""``preact_bottleneck``: the 1x1 - 3x3 - 1x1 convolutions of ``bottleneck`` in the
pre-activation arrangement (He et al. 2016): nothing after the add."""

from __future__ import annotations

from typing import ClassVar, Literal

from .bottleneck import Bottleneck, BottleneckOptions, grouped
from .builder import BlockBuilder
from .options import PreactProjectionShortcut, PreactShortcut, StageOptions
from .units import pre_activation, preactivate


class PreactBottleneckStage(BottleneckOptions, StageOptions):
    block: Literal["preact_bottleneck"]
    """norm - act - conv1x1 - norm - act - conv3x3 - norm - act - conv1x1 - add."""
    shortcut: PreactShortcut = PreactProjectionShortcut()
    """Used where the block changes the shape (see `every_block`, `same_channels` and `source`)."""


class PreactBottleneck(Bottleneck):
    name = "preact_bottleneck"
    options: ClassVar[type[StageOptions]] = PreactBottleneckStage
    summary = "norm - act - conv1x1 - norm - act - conv3x3(groups) - norm - act - conv1x1 - [SE] - add(shortcut)"
    preactivated = True
    refusals: ClassVar[dict[str, str]] = {
        **{k: v for k, v in Bottleneck.refusals.items() if k != "source"},
        "zero_init_last_norm": "a pre-activation block ends in a conv, not a norm",
    }

    def preactivation(self, b: BlockBuilder, x: str) -> str:
        return preactivate(b, x)

    def branch(self, b: BlockBuilder, x: str) -> str:
        return pre_activation(b, x, grouped(b, self.steps(b.place, b.whole)))
