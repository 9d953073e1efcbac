"""The interface of a block kind.

A kind is one object in :data:`.registry.KINDS`. It owns

* ``options``: the pydantic model of a stage of this kind (its fields are the options the kind
  accepts; the JSON Schema and the language reference list exactly these);
* :meth:`depth`: the weighted layers it adds to the main path (the depth rules);
* :meth:`steps`: its convolutions, with widths computed once for both the expander (which
  refuses widths that are not whole) and the size budget (which rounds them up);
* :meth:`preactivation` and :meth:`branch`: its residual branch, built through a
  :class:`~.builder.BlockBuilder`.

What every kind shares is not written here: :mod:`.residual` builds the shortcut and the add,
and applies zero-init, squeeze-and-excitation and stochastic depth to the branch's output, once
for all kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..diagnostics import KeyPath
from .options import AnyShortcut, StageOptions

if TYPE_CHECKING:
    from ..spec import ResNetSpec
    from .builder import BlockBuilder

class Whole(Protocol):
    """How a width that arithmetic gives as a fraction becomes a channel count: the expander
    refuses one that is not whole (RS208, located at the key that derives it, ``at``), the size
    budget rounds it up (:data:`rounded_up`)."""

    def __call__(self, value: Fraction, what: str) -> int: ...

    def at(self, origin: KeyPath) -> Whole: ...


class _RoundedUp:
    def __call__(self, value: Fraction, what: str) -> int:
        return max(1, -(-value.numerator // value.denominator))

    def at(self, origin: KeyPath) -> Whole:
        return self


rounded_up: Whole = _RoundedUp()


@dataclass(frozen=True)
class Step:
    """One convolution of a built-in block (named ``conv1``, ``conv2``... in order)."""

    kernel: int
    stride: int
    width: int
    groups: int = 1
    dropout_before: float = 0.0  # dropout between the previous unit and this conv (Wide ResNet)


@dataclass(frozen=True)
class Place:
    """Where a block sits, for the kind's arithmetic: the stage's options, the kind as named in
    the spec, its input channels and its stride."""

    spec: ResNetSpec
    name: str
    options: StageOptions
    in_channels: int
    stride: int


class BlockKind:
    """One kind of residual block; see the module docstring. Subclass with the kind's
    ``name``, ``options`` (its stage model), ``summary`` (the block as a graph, for the language
    reference) and ``convs`` (its depth) as class keywords, implement :meth:`steps` (or override
    what differs), and register an instance in :data:`.registry.BUILTIN`."""

    name: ClassVar[str]
    options: ClassVar[type[StageOptions]]
    summary: ClassVar[str]
    conv_count: ClassVar[int] = 0
    # Whether the block may begin with a pre-activation (norm and activation before its first
    # conv): its projections then offer `source`. Built-in pre-activation kinds also end with
    # the add (nothing after it).
    preactivated: ClassVar[bool] = False
    # Option -> why it does not apply to this kind (the hint of RS111, after the kinds it applies to).
    refusals: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, *, name: str = "", options: type[StageOptions] | None = None, summary: str = "",
                          convs: int | None = None, **kwargs: object) -> None:  # fmt: skip
        super().__init_subclass__(**kwargs)
        # Only what is given: a mixin between a kind and BlockKind must not shadow the kind's.
        if name:
            cls.name = name
        if options is not None:
            cls.options = options
        if summary:
            cls.summary = summary
        if convs is not None:
            cls.conv_count = convs

    def depth(self, spec: ResNetSpec, name: str) -> int:
        """Weighted layers on the main path: the convolutions of the residual branch."""
        return self.conv_count

    def steps(self, place: Place, whole: Whole) -> list[Step]:
        raise NotImplementedError

    def built_steps(self, b: BlockBuilder) -> list[Step]:
        """The steps of the block ``b`` builds, checked as building needs (widths whole)."""
        return self.steps(b.place, b.whole)

    def out_channels(self, place: Place, whole: Whole) -> int:
        return self.steps(place, whole)[-1].width

    def activation_after_add(self, spec: ResNetSpec, name: str) -> bool:
        return not self.preactivated

    def begins_with_preactivation(self, spec: ResNetSpec, name: str) -> bool:
        return self.preactivated

    def ends_with_norm(self, spec: ResNetSpec, name: str) -> bool:
        return not self.preactivated

    def estimate(self, place: Place) -> tuple[int, int, int]:
        """(parameters, nodes, output channels) of one block's branch, for the size budget (its
        convs with a bias and a norm each, its norms and activations, a dropout)."""
        steps = self.steps(place, rounded_up)
        params, cin = 0, place.in_channels
        for step in steps:
            params += step.kernel * step.kernel * cin * step.width // step.groups + 4 * step.width
            cin = step.width
        return params, 3 * len(steps) + 1, steps[-1].width

    def shortcut(self, b: BlockBuilder) -> AnyShortcut:
        """The shortcut settings this block uses."""
        return b.options.shortcut

    def preactivation(self, b: BlockBuilder, x: str) -> str | None:
        """Build the block's pre-activation and return its output, or None if it has none."""
        return None

    def branch(self, b: BlockBuilder, x: str) -> str:
        """Build the residual branch from ``x`` (the pre-activation's output if there is one)
        and return the name of its last node."""
        raise NotImplementedError
