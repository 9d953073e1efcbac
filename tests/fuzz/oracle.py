"""An independent shape oracle for generated specs, written from docs/spec-language.md, not from
``resnet_spec.shapes``.

The fuzz strategies use it twice: to pick input sizes for which a generated spec is valid (so the
generated specs are valid by construction, not by asking the validator), and as a second opinion
on every stage's output shape. It understands the spec *dict* and works one spatial axis at a
time (height and width never interact in the language), plus one pass over channels.

It is deliberately small: where the language has a corner it does not model, it raises
:class:`Unsupported` and the strategies never generate that corner for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUILTIN = ("basic", "bottleneck", "preact_basic", "preact_bottleneck")
BLOCK_DEPTH = {"basic": 2, "preact_basic": 2, "bottleneck": 3, "preact_bottleneck": 3}


class Invalid(Exception):
    """The spec breaks a rule of the language; ``code`` is the diagnostic the validator should give."""

    def __init__(self, code: str, what: str):
        super().__init__(f"{code}: {what}")
        self.code = code


class Unsupported(Exception):
    """A construct the oracle does not model."""


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def pads(padding: Any, kernel: int, stride: int, size: int, axis: int) -> tuple[int, int]:
    """(before, after) padding on one axis, per the language: TensorFlow 'same', 'valid',
    'symmetric' (k // 2), an int, or [top, bottom, left, right]."""
    if padding == "same":
        total = max((ceil_div(size, stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    if padding == "valid":
        return 0, 0
    if padding == "symmetric":
        return kernel // 2, kernel // 2
    if isinstance(padding, int):
        return padding, padding
    if isinstance(padding, list) and len(padding) == 4:
        return (padding[0], padding[1]) if axis == 0 else (padding[2], padding[3])
    raise Unsupported(f"padding {padding!r}")


def window(size: int, kernel: int, stride: int, before: int, after: int) -> int:
    padded = size + before + after
    if kernel > padded:
        raise Invalid("RS203", f"window {kernel} > padded {padded}")
    return (padded - kernel) // stride + 1


def conv_axis(size: int, kernel: Any, stride: Any, padding: Any, axis: int) -> int:
    k, s = pair(kernel)[axis], pair(stride)[axis]
    return window(size, k, s, *pads(padding, k, s, size, axis))


def pool_axis(size: int, layer: dict[str, Any], axis: int) -> int:
    k = pair(layer.get("pool_size", 2))[axis]
    s = pair(layer["stride"] if layer.get("stride") is not None else layer.get("pool_size", 2))[axis]
    padding = layer.get("padding", "valid")
    before, after = pads(padding, k, s, size, axis)
    if max(before, after) >= k:
        raise Invalid("RS203", "pool padding not smaller than the window")
    return window(size, k, s, before, after)


# --------------------------------------------------------------------------- the settings cascade


def _padding(*levels: dict[str, Any] | None) -> Any:
    for level in levels:
        if level and level.get("padding") is not None:
            return level["padding"]
    return "same"


@dataclass
class Prediction:
    stages: list[tuple[int, int, int]]  # output (h, w, c) of every stage
    body: tuple[int, int, int]  # what the head receives
    output: tuple[int, ...]


# --------------------------------------------------------------------------- one spatial axis


def _layers_axis(size: int, layers: list[dict[str, Any]], axis: int, cascade: list[dict[str, Any] | None],
                 block_stride: int | None) -> int:  # fmt: skip
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            stride = layer.get("stride", 1)
            if stride == "block":
                if block_stride is None:
                    raise Invalid("RS109", "stride: block outside a custom block")
                stride = block_stride
            padding = layer.get("padding")
            size = conv_axis(
                size, layer.get("kernel_size", 3), stride, padding if padding is not None else _padding(*cascade), axis
            )
        elif kind == "zero_pad":
            p = layer["padding"]
            size += 2 * p if isinstance(p, int) else (p[0] + p[1] if axis == 0 else p[2] + p[3])
        elif kind in ("max_pool", "avg_pool"):
            size = pool_axis(size, layer, axis)
        elif kind in ("norm", "activation", "dropout"):
            pass
        else:
            raise Unsupported(kind)
    return size


def _shortcut(stage: dict[str, Any], custom: dict[str, Any] | None) -> dict[str, Any]:
    raw = (custom or {}).get("shortcut") or stage.get("shortcut", "projection")
    return {"kind": raw} if isinstance(raw, str) else {"kind": "projection", **raw}


def _shortcut_axis(size: int, stride: int, changes: bool, sc: dict[str, Any]) -> int:
    if sc["kind"] == "identity" or not (changes or sc.get("every_block", False)):
        return size
    if sc["kind"] == "zero_pad":
        return ceil_div(size, stride)
    if sc["kind"] == "projection":
        return (size - 1) // stride + 1
    return ceil_div(size, stride)  # avg_pool_projection: s x s 'same' pooling, then a 1x1 conv


def _block_axis(size: int, kind: str, stride: int, stage: dict[str, Any], spec: dict[str, Any], axis: int,
                changes: bool) -> int:  # fmt: skip
    custom = spec.get("blocks", {}).get(kind)
    if custom is not None:
        cascade = [custom.get("defaults"), stage.get("defaults"), spec.get("defaults")]
        branch = _layers_axis(size, custom["layers"], axis, cascade, stride)
    else:
        padding = _padding(stage.get("defaults"), spec.get("defaults"))
        if kind in ("basic", "preact_basic"):
            branch = conv_axis(conv_axis(size, 3, stride, padding, axis), 3, 1, padding, axis)
        else:
            first, middle = (stride, 1) if stage.get("stride_placement", "3x3") == "first_1x1" else (1, stride)
            branch = conv_axis(size, 1, first, padding, axis)
            branch = conv_axis(branch, 3, middle, padding, axis)
            branch = conv_axis(branch, 1, 1, padding, axis)
    short = _shortcut_axis(size, stride, changes, _shortcut(stage, custom))
    if branch != short:
        raise Invalid("RS201", f"axis {axis}: branch {branch} != shortcut {short}")
    return branch


# --------------------------------------------------------------------------- channels


def _whole(value: float) -> int:
    if abs(value - round(value)) > 1e-9 or round(value) < 1:
        raise Invalid("RS208", f"{value} is not a whole channel count")
    return round(value)


def _conv_channels(cin: int, filters: int, groups: int) -> None:
    if cin % groups or filters % groups:
        raise Invalid("RS206", f"groups {groups} vs {cin} -> {filters}")


def _layers_channels(cin: int, layers: list[dict[str, Any]], stage_filters: int | None) -> int:
    c = cin
    for layer in layers:
        if layer["type"] != "conv":
            continue
        if layer.get("filters") is not None:
            f = layer["filters"]
        elif stage_filters is None:
            raise Invalid("RS102", "stem conv without filters")
        else:
            f = _whole(stage_filters * layer.get("filters_ratio", 1.0))
        _conv_channels(c, f, layer.get("groups", 1))
        c = f
    return c


def _block_channels(cin: int, kind: str, stage: dict[str, Any], spec: dict[str, Any]) -> int:
    filters = stage["filters"]
    wm = stage.get("width_multiplier", 1.0)
    custom = spec.get("blocks", {}).get(kind)
    if custom is not None:
        return _layers_channels(cin, custom["layers"], filters)
    if kind in ("basic", "preact_basic"):
        return _whole(filters * wm)
    groups = stage.get("groups", 1)
    if stage.get("width_per_group") is not None:
        mid = _whole(groups * stage["width_per_group"] * wm)
    else:
        mid = _whole(filters / stage.get("bottleneck_ratio", 4.0) * wm)
    if mid % groups:
        raise Invalid("RS206", f"inner width {mid} vs groups {groups}")
    return filters


# --------------------------------------------------------------------------- depth


def block_depth(spec: dict[str, Any], kind: str) -> int:
    if kind in BLOCK_DEPTH:
        return BLOCK_DEPTH[kind]
    return sum(layer["type"] == "conv" for layer in spec["blocks"][kind]["layers"])


def block_counts(spec: dict[str, Any]) -> list[int]:
    stages = spec["stages"]
    if all("blocks" in s for s in stages):
        return [s["blocks"] for s in stages]
    fixed = sum(layer["type"] == "conv" for layer in spec.get("stem", [])) + 1
    open_ = [s for s in stages if "blocks" not in s]
    for s in stages:
        if "blocks" in s:
            fixed += block_depth(spec, s.get("first_block") or s["block"]) + (s["blocks"] - 1) * block_depth(
                spec, s["block"]
            )
    per_n = sum(block_depth(spec, s["block"]) for s in open_)
    offset = fixed + sum(
        block_depth(spec, s.get("first_block") or s["block"]) - block_depth(spec, s["block"]) for s in open_
    )
    if per_n == 0:
        raise Invalid("RS205", "no block count gives this depth")
    n, rest = divmod(spec["depth"] - offset, per_n)
    if rest or n < 1:
        raise Invalid("RS205", "no whole n")
    return [s.get("blocks", n) for s in stages]


def total_depth(spec: dict[str, Any], counts: list[int]) -> int:
    depth = sum(layer["type"] == "conv" for layer in spec.get("stem", [])) + 1
    for stage, n in zip(spec["stages"], counts):
        depth += block_depth(spec, stage.get("first_block") or stage.get("block", "basic")) + (n - 1) * block_depth(
            spec, stage.get("block", "basic")
        )
    return depth


# --------------------------------------------------------------------------- the whole body


def _walk(spec: dict[str, Any], visit_stem: Any, visit_block: Any, state: Any) -> tuple[Any, list[Any]]:
    state = visit_stem(state)
    outs = []
    for stage, n in zip(spec["stages"], block_counts(spec)):
        strided = n - 1 if stage.get("stride_block") == "last" else 0  # which block carries the stride
        for b in range(n):
            kind = stage.get("first_block") if b == 0 and stage.get("first_block") else stage.get("block", "basic")
            state = visit_block(state, kind, stage, stage.get("stride", 1) if b == strided else 1)
        outs.append(state)
    return state, outs


def body_channels(spec: dict[str, Any]) -> tuple[int, list[int], list[bool]]:
    """Channels after the body and after every stage; also whether each block changes the shape."""
    changes: list[bool] = []

    def stem(c: int) -> int:
        return _layers_channels(c, spec.get("stem", []), None)

    def block(c: int, kind: str, stage: dict[str, Any], stride: int) -> int:
        out = _block_channels(c, kind, stage, spec)
        change = out != c or stride != 1
        custom = spec.get("blocks", {}).get(kind)
        sc = _shortcut(stage, custom)
        if change and sc["kind"] == "zero_pad" and out < c:
            raise Invalid("RS204", f"zero_pad shortcut {c} -> {out}")
        if sc["kind"] == "identity" and out != c:
            raise Invalid("RS201", f"identity shortcut with {c} -> {out} channels")
        changes.append(change)
        return out

    return (*_walk(spec, stem, block, spec["input"]["channels"]), changes)  # type: ignore[return-value]


def body_axis(spec: dict[str, Any], axis: int, size: int) -> tuple[int, list[int]]:
    """Size on one axis after the body and after every stage, for an input of ``size``."""
    _, _, changes = body_channels(spec)
    flags = iter(changes)

    def stem(n: int) -> int:
        return _layers_axis(n, spec.get("stem", []), axis, [spec.get("defaults")], None)

    def block(n: int, kind: str, stage: dict[str, Any], stride: int) -> int:
        return _block_axis(n, kind, stride, stage, spec, axis, next(flags))

    out = _walk(spec, stem, block, size)
    if out[0] < 1:
        raise Invalid("RS202", "size vanished")
    return out


def valid_sizes(spec: dict[str, Any], axis: int, sizes: range) -> list[int]:
    found = []
    for n in sizes:
        try:
            body_axis(spec, axis, n)
        except Invalid:
            continue
        found.append(n)
    return found


def head_output(shape: tuple[int, ...], spec: dict[str, Any]) -> tuple[int, ...]:
    for layer in spec.get("head", {}).get("layers", [{"type": "global_avg_pool"}]):
        kind = layer["type"]
        if kind in ("max_pool", "avg_pool"):
            if len(shape) != 3:
                raise Invalid("RS209", "pool on a vector")
            shape = (pool_axis(shape[0], layer, 0), pool_axis(shape[1], layer, 1), shape[2])
        elif kind == "global_avg_pool":
            if len(shape) != 3:
                raise Invalid("RS209", "global pool on a vector")
            shape = (shape[2],)
        elif kind == "flatten":
            shape = (shape[0] * shape[1] * shape[2],) if len(shape) == 3 else shape
        elif kind == "dense":
            if len(shape) != 1:
                raise Invalid("RS209", "dense on a feature map")
            shape = (layer["units"],)
    if len(shape) != 1:
        raise Invalid("RS209", "the classifier needs a vector")
    return (spec["classes"],)


def predict(spec: dict[str, Any]) -> Prediction:
    """Every stage's output shape, the body's and the model's; raises :class:`Invalid`."""
    channels, stage_channels, _ = body_channels(spec)
    h, stage_h = body_axis(spec, 0, spec["input"]["height"])
    w, stage_w = body_axis(spec, 1, spec["input"]["width"])
    body = (h, w, channels)
    return Prediction(list(zip(stage_h, stage_w, stage_channels)), body, head_output(body, spec))
