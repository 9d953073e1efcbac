"""Nothing silently ignored: options that the block kinds of a stage would not build.

Two places find them. The schema check refuses a key that the stage's model (its ``block``'s)
does not have; :func:`explain` turns that into RS111 when the key is an option of another kind
or of another shortcut kind, with a hint naming where it applies. :func:`check` then looks at
what only the whole spec shows: custom blocks (does one begin with a pre-activation, end with a
norm, bring its own shortcut), ``first_block``, and options that contradict each other.

An option is checked against the *kinds* of a stage. A stage-wide setting that this stage's
shapes never call for (a projection setting in a stage where no block changes the shape, a
stride placement in a stage of stride 1) is accepted: it applies wherever the kind would use it.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, KeyPath
from .custom import CustomStage
from .kind import BlockKind
from .options import ProjectionShortcut, shortcut_models
from .registry import ALL, CUSTOM, KINDS, kind_of

if TYPE_CHECKING:
    from ..spec import ResNetSpec
    from .options import StageOptions

_SHORTCUT_REASONS = {"identity": "an identity shortcut has no layers", "zero_pad": "a zero_pad shortcut has no parameters"}


def _what(name: str) -> str:
    return f"{name} blocks" if name in KINDS else f"the custom block '{name}'"


def unknown_kind(name: str, known: list[str], key_path: KeyPath) -> Diagnostic:
    match = difflib.get_close_matches(name, known, n=1)
    hint = (f"did you mean '{match[0]}'? " if match else "") + "known kinds: " + ", ".join(known)
    return Diagnostic("RS108", f"unknown block kind '{name}'", hint=hint, key_path=key_path)


def not_applicable(option: str, where: str, applies: str, reason: str | None, key_path: KeyPath) -> Diagnostic:
    hint = f"`{option}` applies to {applies}" + (f"; {reason}" if reason else "")
    return Diagnostic("RS111", f"`{option}` does not apply to {where}", hint=hint, key_path=key_path)


# --------------------------------------------------------------------------- unknown keys (schema check)


def explain(path: KeyPath, data: Any) -> Diagnostic | None:
    """For an unknown key at ``path``: RS111 if it is an option of another block or shortcut
    kind, RS108 if the stage names an unknown kind (the real mistake), else None."""
    if len(path) < 3 or not isinstance(data, dict) or path[0] not in ("stages", "blocks"):
        return None
    owner = _item(data, path[:2])
    if not isinstance(owner, dict):
        return None
    if path[0] == "stages":
        name = owner.get("block", "basic")
        blocks = data.get("blocks")
        declared = list(blocks) if isinstance(blocks, dict) else []
        if isinstance(name, str) and name not in KINDS and name not in declared:
            return unknown_kind(name, [*KINDS, *declared], (*path[:2], "block"))
        if not isinstance(name, str):
            return None
        if len(path) == 3:
            return _stage_option(path, name, owner)
    else:
        name = str(path[1])
    if len(path) == 4 and path[2] == "shortcut":
        return _shortcut_option(path, name, owner.get("shortcut"))
    return None


def _item(data: Any, path: KeyPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _stage_option(path: KeyPath, name: str, stage: dict[str, Any]) -> Diagnostic | None:
    option = str(path[-1])
    kinds = [kind for kind in ALL if option in kind.options.model_fields]
    if not kinds:
        return None
    reason = kind_of(name).refusals.get(option)
    first = stage.get("first_block")
    if isinstance(first, str) and first != name:
        reason = (reason + "; " if reason else "") + (
            f"a stage's options are those of its `block` ({name}); its first_block takes the ones both kinds have"
        )
    return not_applicable(option, _what(name), _kinds_text(kinds), reason, path)


def _kinds_text(kinds: list[BlockKind]) -> str:
    named = [kind.name for kind in kinds if kind is not CUSTOM] + (["custom"] if CUSTOM in kinds else [])
    text = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return f"{text} blocks"


def _shortcut_option(path: KeyPath, name: str, shortcut: Any) -> Diagnostic | None:
    if not isinstance(shortcut, dict):
        return None
    option, kind = str(path[-1]), shortcut.get("kind", "projection")
    models = shortcut_models(preact=True)
    if kind not in models:
        return None  # an unknown shortcut kind is its own error
    if option in models[kind].model_fields:  # `source` outside pre-activation blocks
        preact = [k.name for k in ALL if k.preactivated and k is not CUSTOM]
        applies = f"the projections of pre-activation blocks ({', '.join(preact)}) and of custom blocks that begin with a norm or activation"
        return not_applicable(option, _what(name), applies, kind_of(name).refusals.get(option), path)
    having = [k for k, model in models.items() if option in model.model_fields]
    if not having:
        return None
    return not_applicable(option, f"a {kind} shortcut", " and ".join(having) + " shortcuts", _SHORTCUT_REASONS.get(kind), path)


# --------------------------------------------------------------------------- what the whole spec shows


def check(spec: ResNetSpec) -> list[Diagnostic]:
    """Block kinds known, custom block names free, and every option used by some block."""
    known = [*KINDS, *spec.blocks]
    found = [
        Diagnostic("RS107", f"a custom block cannot be named like the built-in kind '{name}'",
                   hint="rename it (the built-in kind would be used where a stage names it)", key_path=("blocks", name))
        for name in spec.blocks if name in KINDS
    ]  # fmt: skip
    for i, stage in enumerate(spec.stages):
        names = [stage.block] if stage.first_block is None else [stage.block, stage.first_block]
        unknown = [key for key, name in zip(("block", "first_block"), names) if name not in known]
        found += [unknown_kind(getattr(stage, key), known, ("stages", i, key)) for key in unknown]
        if not unknown:
            found += _stage_checks(spec, i, stage)
    for name, custom in spec.blocks.items():
        if custom.shortcut is not None and "source" in custom.shortcut.model_fields_set and not CUSTOM.begins_with_preactivation(spec, name):
            found.append(_no_preactivation(name, ("blocks", name, "shortcut", "source")))
    return found


def _stage_checks(spec: ResNetSpec, i: int, stage: StageOptions) -> list[Diagnostic]:
    at = ("stages", i)
    found = []
    if stage.first_block == stage.block:
        found.append(Diagnostic("RS111", f"`first_block` names the stage's own kind '{stage.block}'",
                                hint="remove `first_block`: every block of the stage is already of that kind",
                                key_path=(*at, "first_block")))  # fmt: skip
    named = [stage.block] if stage.first_block is None else [stage.block, stage.first_block]
    kinds = [(kind_of(name), name) for name in named]
    set_ = stage.model_fields_set
    if getattr(stage, "zero_init_last_norm", False) and not any(k.ends_with_norm(spec, n) for k, n in kinds):
        found.append(not_applicable("zero_init_last_norm", _what(stage.block), "blocks whose residual branch ends in a norm",
                                    "the block's last layer is not a norm (give a norm layer `zero_init: true` instead)",
                                    (*at, "zero_init_last_norm")))  # fmt: skip
    users = [(k, n) for k, n in kinds if not (k is CUSTOM and spec.blocks[n].shortcut is not None)]
    if "shortcut" in set_ and not users:
        found.append(Diagnostic("RS111", "the stage's `shortcut` is never used: its blocks bring their own",
                                hint="remove it, or the `shortcut` of the custom block", key_path=(*at, "shortcut")))  # fmt: skip
    sc = stage.shortcut
    explicit_source = isinstance(sc, ProjectionShortcut) and "source" in sc.model_fields_set
    if explicit_source and isinstance(stage, CustomStage) and not any(k.begins_with_preactivation(spec, n) for k, n in users):
        found.append(_no_preactivation(stage.block, (*at, "shortcut", "source")))
    if {"bottleneck_ratio", "width_per_group"} <= set_:
        found.append(Diagnostic("RS107", "give `bottleneck_ratio` or `width_per_group`, not both",
                                hint="`width_per_group` gives the inner width (groups x width_per_group); `bottleneck_ratio` would be ignored",
                                key_path=(*at, "bottleneck_ratio")))  # fmt: skip
    if spec.stochastic_depth is not None and stage.stochastic_depth_rate > 0:
        found.append(Diagnostic("RS107", "a stage's `stochastic_depth_rate` and the network's `stochastic_depth` contradict each other",
                                hint="give the network-wide schedule or per-stage rates, not both",
                                key_path=(*at, "stochastic_depth_rate")))  # fmt: skip
    return found


def _no_preactivation(name: str, key_path: KeyPath) -> Diagnostic:
    return not_applicable("source", f"the custom block '{name}'", "blocks that begin with a pre-activation",
                          f"'{name}' has no norm or activation layers before its first conv", key_path)  # fmt: skip
