"""Match a named source (a state dict, a weights file) to the spec by the hierarchy of its names.

A flat file keeps no dataflow, only names. What the matcher takes from them is structure, never
vocabulary (``downsample``, ``shortcut`` or ``_0_`` mean nothing to it):

1. **Blocks.** Names are split into paths (``layer2.0.conv1`` -> layer2 / 0 / conv1). At some
   depth the containers (``layer2.0``, ``stages.1.blocks.0``, ``conv3_block1``) hold exactly the
   spec's blocks: as many, in the same order, each with the same multiset of tensor shapes.
   Numbers in names are compared as numbers (``block10`` after ``block2``), which is the order
   in which every framework names repeated layers.
2. **Shortcut.** Inside a block, the shortcut is the group of units that has the shortcut's
   shapes and leaves the rest to the branch: a sub-container (``downsample``, Keras' ``_0_``
   layers) is preferred over loose layers, then an assignment under which the branch's layers
   run in name order, then one under which they run in the file's own order (``torch.save``
   keeps the modules' registration order; safetensors and Keras 3 files do not keep one). Two
   equally good answers that differ are an error (it says which), never a guess.
3. **Order among equal shapes.** Where several units of one block (or of the stem and head)
   have the same shapes, they are taken in the file's own order where it keeps one (a ``.pth``
   state dict, a legacy Keras file), else in name order where the names differ by a number or
   a letter only (``bn1`` / ``bn2``); otherwise the order is unknown, and that is an error.
4. **Stem and head.** The units outside every block fill the stem's and head's nodes in that
   order, by shape; anything left over is an error (the file holds layers the spec lacks).
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .fit import Mismatch, misfit
from .source import NamedSource, Unit, natural_key, show_signature
from .target import Block, Slot, Target

Pairs = list[tuple[Slot, Unit]]
_MAX_COMBINATIONS = 256


def match_names(target: Target, source: NamedSource) -> Pairs:
    units = sorted(source.units, key=lambda u: natural_key(u.path))
    rank = {id(u): i for i, u in enumerate(units)}
    # Several depths can hold the blocks' shapes: with one block per stage, the stages
    # (``stage2``) do as well as the blocks (``stage2.block0``). The first that matches wins.
    failure: Mismatch | None = None
    for depth, groups in _find_blocks(target, units):
        try:
            return _match_at(target, units, rank, depth, groups)
        except Mismatch as problem:
            failure = failure or problem
    assert failure is not None  # _find_blocks yields at least once or raises
    raise failure


def _match_at(target: Target, units: list[Unit], rank: dict[int, int], depth: int, groups: list[list[Unit]]) -> Pairs:
    pairs: Pairs = []
    for block, group in zip(target.blocks, groups):
        pairs.extend(_match_block(block, group, depth, rank))
    inside = {id(u) for group in groups for u in group}
    pool = [u for u in units if id(u) not in inside]
    pairs.extend(_match_pool([*target.stem, *target.head], pool, leftovers=bool(target.arch.graph.outputs)))
    return pairs


# ---------------------------------------------------------------------- 1. blocks


def _find_blocks(target: Target, units: list[Unit]) -> Iterator[tuple[int, list[list[Unit]]]]:
    """Every depth whose containers hold the spec's blocks, shallowest first (the first run of
    them at each depth); raises :class:`Mismatch` when there is none."""
    wanted = [Counter(s.signature() for s in block.slots) for block in target.blocks]
    best: _Attempt | None = None
    found_any = False
    for depth in range(1, max((len(u.path) for u in units), default=1)):
        groups: dict[tuple[str, ...], list[Unit]] = {}
        for unit in units:
            if len(unit.path) > depth:
                groups.setdefault(unit.path[:depth], []).append(unit)
        keys = sorted(groups, key=natural_key)
        found = [Counter(u.signature() for u in groups[k]) for k in keys]
        blocky = [i for i, k in enumerate(keys) if _block_like(groups[k])]
        for start in range(len(keys)):
            count = 0
            while count < len(wanted) and start + count < len(keys) and found[start + count] == wanted[count]:
                count += 1
            if count == len(wanted):
                found_any = True
                yield depth, [groups[k] for k in keys[start : start + count]]
                break
            # For the message: the most blocks matched in a row; where none matched, the depth with the
            # most block-like containers, from its first one.
            if count == 0 and (not blocky or start != blocky[0]):
                continue
            attempt = _Attempt(count, len(blocky), start, keys, groups)
            if best is None or (attempt.count, attempt.blocky) > (best.count, best.blocky):
                best = attempt
    if found_any:
        return
    if not _mixed_containers(units):
        names = ", ".join(u.label for u in units[:3])
        raise Mismatch(
            f"{target.blocks[0].name}: the source's names do not group its layers into blocks (names like {names}), "
            "so no block can be found by name; import from the model itself (import_weights(arch, model))"
        )
    raise Mismatch(_no_blocks(target, best))


def _block_like(units: list[Unit]) -> bool:
    layers = sum(u.kind != "norm" for u in units)
    return layers >= 2 and layers < len(units)


def _mixed_containers(units: list[Unit]) -> bool:
    """Does any name prefix hold both a norm and a conv / dense layer (a block, or Keras'
    ``conv2_block1_1`` conv + bn)? Auto-generated names (``conv2d_3``, ``batch_normalization_7``)
    and names grouped by kind (``res2a_branch2a`` / ``bn2a_branch2a``) do not."""
    kinds: dict[tuple[str, ...], set[bool]] = {}
    for unit in units:
        for depth in range(1, len(unit.path)):
            kinds.setdefault(unit.path[:depth], set()).add(unit.kind == "norm")
    return any(len(found) == 2 for found in kinds.values())


@dataclass
class _Attempt:
    count: int  # blocks matched in a row
    blocky: int  # containers at this depth that look like blocks
    start: int
    keys: list[tuple[str, ...]]
    groups: dict[tuple[str, ...], list[Unit]]


def _no_blocks(target: Target, best: _Attempt | None) -> str:
    if best is None:
        return f"the source's names have no hierarchy of blocks (no name like 'layer1.0.conv1'); {target.blocks[0].name} cannot be found"
    block, position = target.blocks[best.count], best.start + best.count
    if position >= len(best.keys):
        last = ".".join(best.keys[-1])
        return (
            f"{block.slots[0].name}: the source has no block there: the spec has {len(target.blocks)} blocks, "
            f"the source's end after {best.count} ({last})"
        )
    units = best.groups[best.keys[position]]
    name = _container_name(units[0], len(best.keys[position]))
    have = Counter(u.signature() for u in units)
    for slot in block.slots:
        if have[slot.signature()] > 0:
            have[slot.signature()] -= 1
            continue
        return (
            f"{slot.name}: expected {show_signature(slot.signature())} ({_shapes(slot)}); the source's block at that "
            f"place, {name}, has no such tensor left ({_listing(units)})"
        )
    extra = ", ".join(show_signature(sig) for sig, n in have.items() for _ in range(n))
    return f"{block.name}: the source's block {name} has weights the spec's has not: {extra}"


def _container_name(unit: Unit, depth: int) -> str:
    """The source's own spelling of a container (``conv2_block1``, ``layer2.0``)."""
    parts = list(re.finditer(r"[^._/]+", unit.label))
    return unit.label[: parts[depth - 1].end()] if len(parts) >= depth else unit.label


def _listing(units: list[Unit]) -> str:
    layers = [u for u in units if u.kind != "norm"]
    shown = [f"{u.tensors['kernel'].describe()}{' + bias' if 'bias' in u.tensors else ''}" for u in layers[:5]]
    if len(layers) > 5:
        shown.append(f"{len(layers) - 5} more")
    norms = [u for u in units if u.kind == "norm"]
    if norms:
        shown.append(f"{len(norms)} batch norms")
    return "it holds " + ", ".join(shown)


def _shapes(slot: Slot) -> str:
    return ", ".join(f"{key} {shape}" for key, shape in slot.shapes.items())


# ---------------------------------------------------------------------- 2. and 3. inside a block


def _match_block(block: Block, group: list[Unit], depth: int, rank: dict[int, int]) -> Pairs:
    if not block.shortcut:
        return _assign(block.branch, group)
    options: list[tuple[tuple[int, int, int], Pairs]] = []
    for preference, chosen in _shortcut_candidates(block.shortcut, group, depth):
        rest = [u for u in group if all(u is not c for c in chosen)]
        try:
            pairs = _assign(block.shortcut, chosen) + _assign(block.branch, rest)
        except Ambiguous:
            raise
        except Mismatch:
            continue
        in_branch = {id(s) for s in block.branch}
        branch = [(s, u) for s, u in pairs if id(s) in in_branch]
        options.append(((preference, *_in_order(branch, rank)), pairs))
    if not options:
        raise Mismatch(  # pragma: no cover - the block's shapes matched as a whole, so some split exists
            f"{block.shortcut[0].name}: no group of the source's block fits the shortcut"
        )
    options.sort(key=lambda option: option[0])
    best = [pairs for score, pairs in options if score == options[0][0]]
    in_shortcut = {id(s) for s in block.shortcut}
    picks = {tuple(u.label for s, u in pairs if id(s) in in_shortcut) for pairs in best}
    if len(picks) > 1:
        choices = " or ".join("(" + ", ".join(p) + ")" for p in sorted(picks))
        raise Mismatch(f"{block.name}: the source's shortcut is ambiguous: it could be {choices}")
    return best[0]


def _shortcut_candidates(shortcut: list[Slot], group: list[Unit], depth: int) -> list[tuple[int, list[Unit]]]:
    """(preference, units): whole sub-containers first, then combinations of loose layers."""
    wanted = Counter(s.signature() for s in shortcut)
    children: dict[str, list[Unit]] = {}
    for unit in group:
        if len(unit.path) > depth + 1:
            children.setdefault(unit.path[depth], []).append(unit)
    found = [(0, units) for units in children.values() if Counter(u.signature() for u in units) == wanted]
    loose = [u for u in group if len(u.path) == depth + 1]
    choices = [[u for u in loose if u.signature() == slot.signature()] for slot in shortcut]
    for combo in itertools.islice(itertools.product(*choices), _MAX_COMBINATIONS):
        if len({id(u) for u in combo}) == len(combo):
            found.append((1, list(combo)))
    return found


def _in_order(pairs: Pairs, rank: dict[int, int]) -> tuple[int, int]:
    """(by name, by file position), each 0 when the branch's convolutions, and separately its
    norms, run in that order. A file without an order of its own scores 0 on the second."""
    by_file = all(u.order is not None for _, u in pairs)
    return (
        0 if _monotone(pairs, lambda u: rank[id(u)]) else 1,
        0 if not by_file or _monotone(pairs, lambda u: u.order or 0) else 1,
    )


def _monotone(pairs: Pairs, position: Callable[[Unit], int]) -> bool:
    for kinds in (("conv", "dense"), ("norm",)):
        ranks = [position(u) for s, u in pairs if s.kind in kinds]
        if ranks != sorted(ranks):
            return False
    return True


def _assign(slots: Sequence[Slot], units: list[Unit]) -> Pairs:
    """Each slot, in graph order, takes the first unused unit that fits it (:func:`_pick`)."""
    pairs, free = _fill(slots, units)
    if free:
        raise Mismatch(f"{slots[-1].name}: the source has more weights here: {free[0].label} ({free[0].describe()})")
    return pairs


def _fill(slots: Sequence[Slot], units: list[Unit], where: str = "") -> tuple[Pairs, list[Unit]]:
    """(pairs, the units left); a new (excluded) layer without a counterpart is skipped."""
    free = list(units)
    pairs: Pairs = []
    for slot in slots:
        fit = _pick(slot, free)
        if fit is None:
            if slot.excluded:
                continue
            raise Mismatch(_nothing_fits(slot, free) + where)
        free.remove(fit)
        pairs.append((slot, fit))
    return pairs, free


class Ambiguous(Mismatch):
    """Several units fit a node and nothing says which comes first."""


def _pick(slot: Slot, free: list[Unit]) -> Unit | None:
    """The unit for ``slot`` among those that fit it: the first in the file's own order where the
    file keeps one, else the first in name order when the names count (``bn1`` / ``bn2``,
    ``conv1.1`` / ``conv1.4``, ``conv_a`` / ``conv_b``). Names that do not count (``fc_bn`` /
    ``head_bn``) leave the order unknown: an error, not a guess."""
    fits = [u for u in free if misfit(slot, u) is None]  # free is in name order
    if len(fits) < 2 or slot.excluded:
        return fits[0] if fits else None
    if all(u.order is not None for u in fits):
        return min(fits, key=lambda u: u.order or 0)
    if not _numbered(fits[0].path, fits[1].path):
        raise Ambiguous(
            f"{slot.name}: {fits[0].label} and {fits[1].label} both fit, and this file keeps no order that says "
            "which comes first (import from a .pth state dict or from the model itself)"
        )
    return fits[0]


def _numbered(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Do two names differ in one place only, by a number or a single letter?"""
    if len(a) != len(b):
        return False
    differ = [(x, y) for x, y in zip(a, b) if x != y]
    if len(differ) != 1:
        return False
    x, y = differ[0]
    start = len(os.path.commonprefix([x, y]))
    end = len(os.path.commonprefix([x[::-1], y[::-1]]))
    x, y = x[start : len(x) - end], y[start : len(y) - end]
    return (x.isdigit() and y.isdigit()) or (len(x) == len(y) == 1 and x.isalpha() and y.isalpha())


def _nothing_fits(slot: Slot, free: list[Unit]) -> str:
    same_kind = [u for u in free if u.signature()[0] == slot.signature()[0]] or free
    if not same_kind:
        return f"{slot.name}: expected {show_signature(slot.signature())} ({_shapes(slot)}), the source has nothing left there"
    return misfit(slot, same_kind[0]) or slot.name  # the closest candidate says what differs


# ---------------------------------------------------------------------- 4. stem and head


def _match_pool(slots: list[Slot], pool: list[Unit], *, leftovers: bool = False) -> Pairs:
    """The stem and head slots from the units outside the blocks. ``leftovers``: a backbone has
    no head, so the source's (its classifier) may be left unused."""
    pairs, free = _fill(slots, pool, " (outside the source's blocks)")
    if free and not leftovers:
        listing = "; ".join(f"{u.label} ({u.describe()})" for u in free[:3])
        raise Mismatch(f"the source has weights outside its blocks that the spec has no place for: {listing}")
    return pairs
