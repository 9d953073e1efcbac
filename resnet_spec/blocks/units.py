"""The two ways the built-in kinds arrange their convolutions, written once for all of them.

* post-activation (ResNet v1, ``basic`` and ``bottleneck``): conv - norm - act for each step,
  without the last act (the add and the activation after it follow);
* pre-activation (ResNet v2, ``preact_basic`` and ``preact_bottleneck``): norm - act - conv for
  each step; the first norm and act are the block's pre-activation, which a projection may read.

Nodes are named ``conv{i}``, ``norm{i}``, ``act{i}`` by step, and ``dropout`` for a dropout
between two steps. Each conv's bias is the stage's ``layer_bias`` entry of its name, else the
cascaded ``conv_bias``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .builder import BlockBuilder
from .kind import BlockKind, Step


def _conv(b: BlockBuilder, index: int, x: str, step: Step) -> str:
    name = f"conv{index}"
    bias = getattr(getattr(b.options, "layer_bias", None), name, None)
    return b.conv(name, x, filters=step.width, kernel=step.kernel, stride=step.stride, groups=step.groups, bias=bias)


def post_activation(b: BlockBuilder, x: str, steps: list[Step]) -> str:
    h = x
    for i, step in enumerate(steps, 1):
        if step.dropout_before > 0:
            h = b.dropout("dropout", h, step.dropout_before)
        h = b.norm(f"norm{i}", _conv(b, i, h, step))
        if i < len(steps):
            h = b.act(f"act{i}", h)
    return h


def preactivate(b: BlockBuilder, x: str, index: int = 1) -> str:
    return b.act(f"act{index}", b.norm(f"norm{index}", x))


def pre_activation(b: BlockBuilder, preactivated: str, steps: list[Step]) -> str:
    h = preactivated
    for i, step in enumerate(steps, 1):
        if i > 1:
            h = preactivate(b, h, i)
        if step.dropout_before > 0:
            h = b.dropout("dropout", h, step.dropout_before)
        h = _conv(b, i, h, step)
    return h


class PostActivated(BlockKind):
    """A built-in kind in the post-activation arrangement (``basic``, ``bottleneck``)."""

    def branch(self, b: BlockBuilder, x: str) -> str:
        return post_activation(b, x, self.built_steps(b))


class PreActivated(BlockKind):
    """The pre-activation variant of a built-in kind: ``class PreactX(PreActivated, X)``. It
    refuses what X refuses but ``source``, and ``zero_init_last_norm`` (it ends in a conv)."""

    preactivated = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        post = next(base for base in cls.__mro__[1:] if issubclass(base, PostActivated))
        cls.refusals = {k: v for k, v in post.refusals.items() if k != "source"}
        cls.refusals["zero_init_last_norm"] = "a pre-activation block ends in a conv, not a norm"

    refusals: ClassVar[dict[str, str]] = {}

    def preactivation(self, b: BlockBuilder, x: str) -> str:
        return preactivate(b, x)

    def branch(self, b: BlockBuilder, x: str) -> str:
        return pre_activation(b, x, self.built_steps(b))
