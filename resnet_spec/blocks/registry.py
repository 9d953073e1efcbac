"""The block kinds, registered in one place, and the stage model they make together.

Adding a kind: write its module (options model, :class:`~.kind.BlockKind` subclass), add an
instance to :data:`BUILTIN` below, and test it; the union of stage models, the JSON Schema, the
language reference, the depth rules, the size budget and the hints of misplaced options all
follow from this list.

``stages[i]`` is validated as the model of its ``block``: a built-in kind's name picks that
kind's model, any other name the custom-block model (a name under ``blocks``). The choice is made
by :func:`block` before validation, so a stage's errors are its own kind's, and the JSON Schema
gives each kind exactly its own fields (a ``oneOf`` whose members fix ``block``).
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Discriminator, Tag

from .basic import Basic
from .bottleneck import Bottleneck
from .custom import BUILTIN_NAMES, Custom
from .kind import BlockKind
from .options import StageOptions
from .preact_basic import PreactBasic
from .preact_bottleneck import PreactBottleneck

BUILTIN: tuple[BlockKind, ...] = (Basic(), Bottleneck(), PreactBasic(), PreactBottleneck())
CUSTOM = Custom()
KINDS: dict[str, BlockKind] = {kind.name: kind for kind in BUILTIN}
ALL: tuple[BlockKind, ...] = (*BUILTIN, CUSTOM)
assert tuple(KINDS) == BUILTIN_NAMES, "custom.BUILTIN_NAMES lists the built-in kinds for the schema"


def block(value: Any) -> str:
    """Which stage model validates ``value`` (named so: pydantic reports the discriminator by
    this function's name). A stage without ``block`` is a basic one."""
    name = value.get("block", "basic") if isinstance(value, dict) else getattr(value, "block", "basic")
    return name if isinstance(name, str) and name in KINDS else CUSTOM.name


if TYPE_CHECKING:
    Stage = StageOptions
else:  # what pydantic reads: each kind's model, told apart by `block`
    Stage = Annotated[reduce(operator.or_, (Annotated[kind.options, Tag(kind.name)] for kind in ALL)), Discriminator(block)]


def kind_of(name: str) -> BlockKind:
    """The kind a stage's ``block`` (or ``first_block``) names: built in, else a custom block."""
    return KINDS.get(name, CUSTOM)


def view(stage: StageOptions, kind: BlockKind, name: str) -> StageOptions:
    """The stage's options as ``kind``'s model: the stage itself for its own kind; for a
    ``first_block`` of another kind, the options both models have (the same fields mean the same
    there), the first kind's defaults for the rest."""
    if isinstance(stage, kind.options):
        return stage
    mine = type(stage).model_fields
    shared = {field: getattr(stage, field) for field in kind.options.model_fields if field in mine and field != "block"}
    return kind.options.model_construct(block=name, **shared)


def applies_to(option: str) -> list[BlockKind]:
    """The kinds whose stages have ``option``."""
    return [kind for kind in ALL if option in kind.options.model_fields]
