"""Depth rules: check a declared ``depth`` against the structure, or derive block counts from it.

Depth counts the weighted layers on the main path, as the ResNet papers do: convolutions of the
stem and of every block's residual branch (shortcut projections excluded) plus the classifier.
Hidden dense layers in the head are not counted (the seed ResNet-34 for CIFAR-10 has two dense
layers and is still "34"). With three stages of n basic blocks and a one-conv stem this gives
6n + 2; with bottleneck blocks 9n + 2; for ImageNet nets it is the layer sum (1 + 3*16 + 1 = 50).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from . import budget
from .blocks.registry import kind_of
from .diagnostics import Diagnostic, digit_count, show_int
from .spec import ConvLayer, ResNetSpec, StageOptions


@dataclass(frozen=True)
class DepthResult:
    block_counts: tuple[int, ...]
    depth: int


def block_depth(spec: ResNetSpec, kind: str) -> int:
    """What one block of ``kind`` (a built-in kind or a custom block's name) adds to the depth."""
    return kind_of(kind).depth(spec, kind)


def _stage_depth(spec: ResNetSpec, stage: StageOptions, blocks: int) -> int:
    first = block_depth(spec, stage.first_block or stage.block)
    return first + (blocks - 1) * block_depth(spec, stage.block)


def _classifier(spec: ResNetSpec) -> int:
    """1 for the classifier a classifier head counts; a backbone (``head.features``) has none."""
    return 0 if spec.head.features is not None else 1


def resolve(spec: ResNetSpec) -> tuple[DepthResult | None, list[Diagnostic]]:
    """Block counts for every stage and the resulting depth (block kinds must already be known)."""
    stem = sum(isinstance(layer, ConvLayer) for layer in spec.stem)
    fixed = stem + _classifier(spec)
    open_stages = [i for i, s in enumerate(spec.stages) if s.blocks is None]
    for i, stage in enumerate(spec.stages):
        if stage.blocks is not None:
            fixed += _stage_depth(spec, stage, stage.blocks)
    if not open_stages:
        counts = tuple(s.blocks or 0 for s in spec.stages)
        if spec.depth is not None and spec.depth != fixed:
            return None, [_mismatch(spec, fixed, counts)]
        return DepthResult(counts, fixed), []
    if spec.depth is None:
        return None, [
            Diagnostic(
                "RS102",
                f"stage {i} has no `blocks` and there is no top-level `depth` to derive it from",
                hint="give the stage `blocks: N`, or declare `depth:` for the whole network",
                key_path=("stages", i, "blocks"),
            )
            for i in open_stages
        ]
    # Every open stage gets the same n: depth = fixed + sum(first - rest) + n * sum(rest).
    per_n = sum(block_depth(spec, spec.stages[i].block) for i in open_stages)
    if per_n == 0:
        return None, [Diagnostic(
            "RS205", "the stages without `blocks` use block kinds without convolutions, so `depth` cannot give their block count",
            hint="give those stages an explicit `blocks`", key_path=("depth",),
        )]  # fmt: skip
    offset = fixed + sum(_stage_depth(spec, spec.stages[i], 1) - block_depth(spec, spec.stages[i].block) for i in open_stages)
    n, remainder = divmod(spec.depth - offset, per_n)
    if remainder or n < 1:
        return None, [_no_n(spec, per_n, offset)]
    counts = tuple(n if s.blocks is None else s.blocks for s in spec.stages)
    return DepthResult(counts, spec.depth), []


def _no_n(spec: ResNetSpec, per_n: int, offset: int) -> Diagnostic:
    depth = spec.depth or 0
    # Integers and Decimal throughout: a depth may have hundreds of digits.
    whole, _ = divmod(depth - offset, per_n)
    if digit_count(depth) <= 15:
        n = str((Decimal(depth - offset) / Decimal(per_n)).quantize(Decimal("0.01")))
    else:
        n = f"about {show_int(whole)}"
    below = max(1, whole)
    candidates = sorted({offset + per_n * below, offset + per_n * (below + 1)})
    nearest = ", ".join(show_int(c) for c in candidates if c != depth)
    hint = f"depth must be {per_n}n + {offset} for a whole n >= 1, or give every stage an explicit `blocks`"
    size = budget.estimate(spec, tuple(below if s.blocks is None else s.blocks for s in spec.stages))
    if size.too_large:
        hint += f"; even the nearest valid depth would give {size.describe()}, beyond the limits"
    return Diagnostic(
        "RS205",
        f"depth {show_int(depth)} gives n = {n} (depth = {per_n}n + {offset}); nearest valid depths: {nearest}",
        hint=hint,
        key_path=("depth",),
    )


def _mismatch(spec: ResNetSpec, actual: int, counts: tuple[int, ...]) -> Diagnostic:
    stem = sum(isinstance(layer, ConvLayer) for layer in spec.stem)
    blocks = actual - stem - _classifier(spec)
    classifier = " + 1 classifier" if _classifier(spec) else " (a backbone: no classifier)"
    return Diagnostic(
        "RS205",
        f"declared depth {show_int(spec.depth or 0)} does not match the structure: {stem} stem conv(s) + {blocks} block "
        f"layers (blocks per stage {list(counts)}){classifier} = {actual}",
        hint=f"write `depth: {actual}`, remove `depth`, or change the block counts",
        key_path=("depth",),
    )
