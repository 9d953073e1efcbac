"""Match a graph source to the spec: both skeletons side by side.

The spec's skeleton and the source's (:mod:`.skeleton`) are walked together: leaf against leaf
(:func:`.fit.misfit`), merge against merge. A source's add does not say which input is the
residual branch and which the shortcut (``out += identity`` and ``shortcut + x`` are both
common), so both orientations are tried; where both fit, the two sides have identical weight
shapes and either assignment computes the same sum. That the shortcut starts at the block input
(or at the pre-activated input, where the spec says so) is part of the structure: a shortcut
that forks elsewhere puts the merge at another place in the skeleton, and the match fails there.
"""

from __future__ import annotations

from .fit import Mismatch, misfit
from .skeleton import Item, Leaf, Merge, leaves
from .source import Unit
from .target import Slot

Pairs = list[tuple[Slot, Unit]]


def match_graph(target: list[Item], source: list[Item], *, backbone: bool = False) -> Pairs:
    """``backbone``: the spec ends before the source does (a backbone has no head), so the
    source's weights after the spec's last ones (its classifier) are left unused."""
    pairs: Pairs = []
    _sequence(target, source[: len(target)] if backbone else source, pairs, where="the network")
    return pairs


def _sequence(target: list[Item], source: list[Item], pairs: Pairs, where: str) -> None:
    for index, wanted in enumerate(target):
        if index >= len(source):
            rest = [leaf.unit for leaf in leaves(target[index:])]
            if all(isinstance(s, Slot) and s.excluded for s in rest):
                return  # only new layers left (a source without a classifier)
            first = _first_slot(target[index:])
            tail = f"after {_describe(source[-1])}" if source else "at all"
            raise Mismatch(f"{first}: the source has no weights there ({where} of the source ends {tail})", len(pairs))
        _item(wanted, source[index], pairs)
    if len(source) > len(target):
        extra = source[len(target)]
        after = _first_slot(target[-1:]) if target else "the start"
        raise Mismatch(f"the source has more weights in {where} after {after}: {_describe(extra)}", len(pairs))


def _item(wanted: Item, found: Item, pairs: Pairs) -> None:
    if isinstance(wanted, Leaf) and isinstance(found, Leaf):
        slot, unit = wanted.unit, found.unit
        assert isinstance(slot, Slot) and isinstance(unit, Unit)
        problem = misfit(slot, unit)
        if problem:
            raise Mismatch(problem, len(pairs))
        pairs.append((slot, unit))
        return
    if isinstance(wanted, Leaf):
        raise Mismatch(f"{_first_slot([wanted])}: the source has {_describe(found)} there", len(pairs))
    if isinstance(found, Leaf) or found.kind != wanted.kind:
        raise Mismatch(
            f"{wanted.label}: expected {_describe(wanted)}, the source has {_describe(found)} there", len(pairs)
        )
    _merge(wanted, found, pairs)


def _merge(wanted: Merge, found: Merge, pairs: Pairs) -> None:
    names = ("residual branch", "shortcut") if wanted.kind == "add" else ("gated input", "gate")
    orders = [(0, 1)] if found.ordered else [(0, 1), (1, 0)]
    best: Mismatch | None = None
    for first, second in orders:
        trial: Pairs = []
        try:
            _sequence(wanted.sides[0], found.sides[first], trial, where=f"the {names[0]} of {wanted.label}")
            _sequence(wanted.sides[1], found.sides[second], trial, where=f"the {names[1]} of {wanted.label}")
        except Mismatch as failure:
            if best is None or failure.progress > best.progress:
                best = failure
            continue
        pairs.extend(trial)
        return
    assert best is not None
    raise Mismatch(best.message, len(pairs) + best.progress)


def _first_slot(items: list[Item]) -> str:
    found = leaves(items)
    return found[0].label if found else (items[0].label if items else "the end")


def _describe(item: Item) -> str:
    if isinstance(item, Leaf):
        unit = item.unit
        return f"{unit.label} ({unit.describe()})" if isinstance(unit, Unit) else item.label
    kind = "a residual add" if item.kind == "add" else "a multiply (gate)"
    counts = [len(leaves(side)) for side in item.sides]
    return f"{kind} ({item.label}) of paths with {counts[0]} and {counts[1]} weighted layers"
