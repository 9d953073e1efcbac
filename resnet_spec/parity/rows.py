"""Comparing one node's tensors from two frameworks: the rows of the report, kink flips, and the
float32 hazards. Everything here works on one node at a time, so a run never needs more than
one node's arrays from each framework in memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .. import graph as g
from .report import Difference, Hazard, Tolerances

if TYPE_CHECKING:
    from ..pipeline import Architecture

LOGITS = "head.classifier"
SMALL_NORM_GROUP = 64  # batch statistics over fewer values than this: float32 cannot decide 1e-4
MISSING = (float("inf"), float("inf"))


def compare(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / scale) with scale = max |b| unless given; infinite when the
    shapes differ or a value is not finite."""
    if a.shape != b.shape:
        return MISSING
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN: not finite, so the row fails
        diff = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
    if scale is None:
        scale = float(np.max(np.abs(b64))) if b64.size else 0.0
    return diff, diff / max(scale, 1e-12)


def magnitude(*arrays: np.ndarray | None) -> float:
    """The largest absolute value in any of ``arrays`` (0 when all are empty or zero; NaN where
    a value is NaN, so that such a row never looks vacuous)."""
    values = [float(np.max(np.abs(x))) for x in arrays if x is not None and x.size]
    return max(values, default=0.0)


def output_row(check: str, node: str, a: np.ndarray | None, b: np.ndarray, tolerances: Tolerances) -> Difference:
    """An output row: the logits of the eval check absolutely (scaled only where they exceed 1
    in magnitude), every other output relatively. ``a`` is None when its framework lacks the node."""
    size = magnitude(a, b)
    if a is None:
        return Difference(check, node, "output", *MISSING, _output_limit(check, node, tolerances),
                          "abs" if check == "eval" and node == LOGITS else "rel", size)  # fmt: skip
    abs_diff, rel_diff = compare(a, b)
    if check == "eval" and node == LOGITS:
        scale = max(1.0, float(np.max(np.abs(b)))) if np.isfinite(b).all() and b.size else 1.0
        return Difference(check, node, "output", abs_diff / scale, abs_diff / scale, tolerances.logits_abs, "abs", size)
    return Difference(check, node, "output", abs_diff, rel_diff, _output_limit(check, node, tolerances), "rel", size)


def _output_limit(check: str, node: str, tolerances: Tolerances) -> float:
    return tolerances.logits_abs if check == "eval" and node == LOGITS else tolerances.outputs_rel


TENSOR_LIMITS = {"norm_stats": "stats_rel", "gradients": "gradients_rel", "weights_after": "weights_rel"}


def tensor_rows(check: str, node: str, a: Mapping[str, np.ndarray] | None, b: Mapping[str, np.ndarray],
                tolerances: Tolerances) -> list[Difference]:  # fmt: skip
    """One row per tensor of a weight node, keys in sorted order. Weights and gradients are
    relative to the largest magnitude among the node's ``b`` tensors; statistics each on its own."""
    limit = getattr(tolerances, TENSOR_LIMITS[check])
    node_scale = max((float(np.max(np.abs(t))) for t in b.values() if t.size), default=0.0)
    rows = []
    for key in sorted(b):
        found = (a or {}).get(key)
        scale = node_scale if check != "norm_stats" else None  # statistics: each tensor on its own scale
        abs_diff, rel_diff = compare(found, b[key], scale) if found is not None else MISSING
        rows.append(Difference(check, node, key, abs_diff, rel_diff, limit, "rel", magnitude(found, b[key])))
    return rows


def kink_nodes(arch: Architecture) -> tuple[set[str], set[str]]:
    """(ReLU / ReLU6 nodes, inputs of max pools): the outputs :func:`kink_flips` reads."""
    relus = {n.name for n in arch.graph if isinstance(n, g.Activation) and n.function in ("relu", "relu6")}
    pooled = {n.inputs[0] for n in arch.graph if isinstance(n, g.MaxPool)}
    return relus, pooled


def node_kink_flips(node: g.Node, a: np.ndarray, b: np.ndarray, pooled_a: np.ndarray | None = None,
                    pooled_b: np.ndarray | None = None) -> int:  # fmt: skip
    """How many elements of one node sit on different sides of a kink in the two forwards: for a
    ReLU / ReLU6, ``a`` and ``b`` are its outputs; for a max pool, ``pooled_a`` / ``pooled_b``
    are its inputs."""
    if isinstance(node, g.Activation) and node.function in ("relu", "relu6"):
        count = int(np.count_nonzero((a > 0) != (b > 0)))
        if node.function == "relu6":
            count += int(np.count_nonzero((a < 6) != (b < 6)))
        return count
    if isinstance(node, g.MaxPool) and pooled_a is not None and pooled_b is not None:
        return int(np.count_nonzero(_window_argmax(node, pooled_a) != _window_argmax(node, pooled_b)))
    return 0


def kink_flips(arch: Architecture, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Per node, how many elements sit on different sides of a kink in the two forwards
    ``a`` and ``b`` (node outputs): ReLU / ReLU6 outputs active in one and not in the other,
    and max-pool windows whose largest input is at a different place. Rounding chose the side,
    and the gradient of such an element is 0 in one framework and its full value in the other."""
    flips: dict[str, int] = {}
    for node in arch.graph:
        if node.name not in a or node.name not in b:
            continue
        first = node.inputs[0] if node.inputs else None
        count = node_kink_flips(node, a[node.name], b[node.name], a.get(first or ""), b.get(first or ""))
        if count:
            flips[node.name] = count
    return flips


def _window_argmax(node: g.MaxPool, x: np.ndarray) -> np.ndarray:
    """Where in each pooling window of the NHWC map ``x`` its maximum is (padding is -inf)."""
    top, bottom, left, right = node.padding
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, node.pool_size, axis=(1, 2))
    windows = windows[:, :: node.strides[0], :: node.strides[1]]
    return np.argmax(windows.reshape(*windows.shape[:4], -1), axis=-1)


def float32_hazards(arch: Architecture, batch_size: int, flips: Mapping[str, int]) -> list[str]:
    """Why float32 train-mode results of one function may differ beyond 1e-4 between frameworks
    (empty when there is no reason)."""
    return [hazard.text for hazard in hazards(arch, batch_size, flips)]


def hazards(arch: Architecture, batch_size: int, flips: Mapping[str, int], step: int | None = None) -> list[Hazard]:
    found = []
    if flips:
        first = next(iter(flips))
        where = f"{first} (forward of step {step})" if step else first
        found.append(Hazard(
            "kink_flips", sum(flips.values()), first,
            f"{sum(flips.values())} element(s) on different sides of a ReLU or max-pool kink in the two float32 "
            f"train-mode forwards (first at {where}; the gradient jumps there)", step=step,
        ))  # fmt: skip
    small = [(n.name, norm_group(arch, n, batch_size)) for n in arch.graph if isinstance(n, g.BatchNorm)]
    small = [(name, size) for name, size in small if size < SMALL_NORM_GROUP]
    if small:
        least = min(size for _, size in small)
        found.append(Hazard(
            "small_norms", len(small), small[0][0],
            f"{len(small)} batch norm(s) take batch statistics over fewer than {SMALL_NORM_GROUP} values "
            f"per channel (as few as {least}, first at {small[0][0]}; rounding is divided by their small deviation)",
            least=least,
        ))  # fmt: skip
    return found


def norm_group(arch: Architecture, node: g.BatchNorm, batch_size: int) -> int:
    """How many values one channel's batch statistics average: N * H * W (N for vectors)."""
    shape = arch.shape_of(node.name)
    return batch_size * (shape[0] * shape[1] if len(shape) == 3 else 1)
