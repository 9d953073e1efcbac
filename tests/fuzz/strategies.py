"""Hypothesis strategies for resnet-spec: valid spec *dicts* covering the whole language, and
random edits of them.

``valid_specs()`` builds specs that are valid by construction: channels are tracked while the
stages are drawn (grouped convs get divisors, zero-pad shortcuts only where channels grow,
identity only where nothing changes), convolutions inside residual branches get paddings that
keep the branch and the shortcut the same size, and the input height and width are drawn from
the sizes the independent oracle (``tests/fuzz/oracle.py``) accepts for the drawn structure. The
head is drawn last, knowing the final feature-map size. Networks stay small (at most ten blocks,
32 channels, 40 pixels) so an example builds in a fraction of a second.

What is covered: every stem layer kind (conv with int/pair kernels and strides, groups, every
padding form; norm; activation; zero_pad; max_pool and avg_pool with their paddings and
``count_padding``; dropout); the four built-in block kinds and custom blocks (convs with
``filters`` / ``filters_ratio`` / neither, ``stride: block``, groups, zero_pad + valid conv,
stride-1 pools, their own shortcut and defaults, ``activation_after_add``); ``first_block``;
every shortcut kind and option (``norm``, ``bias``, ``every_block``, ``same_channels``, ``order``,
``source``); the stride in the first or in a later stage, on the first or the last block
(``stride_block``), ``stride_placement``, ``bottleneck_ratio``, ``groups`` /
``width_per_group``, ``width_multiplier``, ``layer_bias``, ``squeeze_excite``,
``stochastic_depth_rate`` or the network's ``stochastic_depth``, ``dropout_between_convs``,
``zero_init_last_norm``, each only on the block kinds it applies to (elsewhere it is RS111); the settings cascade at every level (norm
settings, activations, initializers, ``conv_bias``, ``kernel_l2``, every padding form); block
counts given per stage or derived from ``depth``; heads (default, global_avg_pool, avg/max pool +
flatten, flatten, dense with activations, norm, dropout) and ``output: logits | softmax``;
optionally a ``training`` section.
"""

from __future__ import annotations

import copy
import math
import string
from pathlib import Path
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from resnet_spec.diagnostics import show_int

from . import oracle

REGRESSIONS = Path(__file__).resolve().parents[1] / "regressions"

ACTIVATIONS = ["relu", "relu6", "silu", "gelu", "sigmoid", "tanh"]
INITIALIZERS = ["he_normal", "he_uniform", "kaiming_normal", "kaiming_normal_fan_out", "glorot_uniform",
                "glorot_normal", "lecun_normal", "torch_default", "zeros"]  # fmt: skip
BUILTIN = list(oracle.BUILTIN)
BASICS = ("basic", "preact_basic")
BOTTLENECKS = ("bottleneck", "preact_bottleneck")
MAX_SIZE = 40  # input pixels per side
MAX_BLOCKS = 10  # per generated network


def is_open(regression: str) -> bool:
    """Whether a regression spec still documents an open bug (its header has an ``# open:`` line).

    Strategies steer clear of the trigger of an open bug, so the property tests stay green while
    the regression test (xfail, strict) keeps the bug visible; removing the ``# open:`` line when
    the bug is fixed re-enables the trigger here too."""
    for path in (REGRESSIONS / f"{regression}.yaml", REGRESSIONS / f"{regression}.json.header"):
        if path.exists():
            return any(line.startswith("# open:") for line in path.read_text(encoding="utf-8").splitlines())
    return False


# --------------------------------------------------------------------------- small pieces

unit_floats = st.floats(0.0, 0.95, allow_nan=False, allow_infinity=False)
rates = st.sampled_from([0.0, 0.1, 0.25, 0.5]) | st.floats(0.0, 0.9, allow_nan=False)
kernel_l2 = st.sampled_from([0.0, 1e-4, 5e-4]) | st.floats(0.0, 0.01, allow_nan=False)


def norm_settings() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "running_stats_decay": st.sampled_from([0.9, 0.99, 0.997]) | st.floats(0.0, 0.999, allow_nan=False),
        "epsilon": st.sampled_from([1e-5, 1e-3, 1.001e-5, 0.1]),
        "running_variance": st.sampled_from(["biased", "unbiased"]),
        "center": st.booleans(),
        "scale": st.booleans(),
    })  # fmt: skip


ANY_PADDING = (
    st.sampled_from(["same", "valid", "symmetric"])
    | st.integers(0, 3)
    | st.lists(st.integers(0, 3), min_size=4, max_size=4)
)


def preserving_paddings(kh: int, kw: int) -> list[Any]:
    """Paddings under which a (kh, kw) conv gives ceil(n / s) on both axes for every n and s:
    the branch of a residual block then always matches its shortcut."""
    found: list[Any] = ["same"]
    if kh % 2 and kw % 2:
        found.append("symmetric")
        if kh == kw:
            found.append((kh - 1) // 2 if kh > 1 else 0)
    if kh == kw == 1:
        found.append("valid")
    for top in range(kh):
        for left in range(kw):
            found.append([top, kh - 1 - top, left, kw - 1 - left])
    return found


def preserving_for_all(kernels: list[tuple[int, int]]) -> list[Any]:
    common = [p for p in preserving_paddings(*kernels[0])] if kernels else ["same"]
    for k in kernels[1:]:
        allowed = preserving_paddings(*k)
        common = [p for p in common if p in allowed]
    return common


def settings(padding: st.SearchStrategy[Any] | None) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "norm": norm_settings(),
        "activation": st.sampled_from(ACTIVATIONS),
        "initializer": st.sampled_from(INITIALIZERS),
        "conv_bias": st.booleans(),
        "kernel_l2": kernel_l2,
    }
    if padding is not None:
        optional["padding"] = padding
    return st.fixed_dictionaries({}, optional=optional)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _maybe(draw: st.DrawFn, target: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


# --------------------------------------------------------------------------- stem


def _pool(draw: st.DrawFn, kind: str, *, preserve: bool) -> dict[str, Any]:
    layer: dict[str, Any] = {"type": kind}
    if preserve:  # stride 1 and a padding that keeps the size (custom blocks)
        k = draw(st.sampled_from([1, 3]))
        layer.update(pool_size=k, stride=1, padding=draw(st.sampled_from(["same", (k - 1) // 2, [(k - 1) // 2] * 4])))
    else:
        k = draw(st.integers(1, 3) | st.lists(st.integers(1, 3), min_size=2, max_size=2))
        layer["pool_size"] = k
        _maybe(draw, layer, "stride", st.integers(1, 3) | st.lists(st.integers(1, 3), min_size=2, max_size=2))
        kh, kw = oracle.pair(k)
        small = min(kh, kw) - 1  # every side must be smaller than the window
        choices: list[st.SearchStrategy[Any]] = [st.sampled_from(["same", "valid"])]
        if small >= 0:
            choices.append(st.integers(0, small))
            choices.append(st.tuples(st.integers(0, kh - 1), st.integers(0, kh - 1), st.integers(0, kw - 1),
                                     st.integers(0, kw - 1)).map(list))  # fmt: skip
        if kh % 2 and kw % 2:
            choices.append(st.just("symmetric"))
        _maybe(draw, layer, "padding", st.one_of(choices))
    if kind == "avg_pool":
        _maybe(draw, layer, "count_padding", st.booleans())
    return layer


def _simple_layer(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    if kind == "norm":
        layer = {"type": "norm", **draw(norm_settings())}
        _maybe(draw, layer, "zero_init", st.booleans())
        return layer
    if kind == "activation":
        layer = {"type": "activation"}
        _maybe(draw, layer, "function", st.sampled_from(ACTIVATIONS))
        return layer
    if kind == "dropout":
        return {"type": "dropout", "rate": draw(rates)}
    raise AssertionError(kind)


def _conv_extras(draw: st.DrawFn, layer: dict[str, Any]) -> None:
    _maybe(draw, layer, "bias", st.booleans())
    _maybe(draw, layer, "initializer", st.sampled_from(INITIALIZERS))
    _maybe(draw, layer, "kernel_l2", kernel_l2)


@st.composite
def stem(draw: st.DrawFn, channels: int) -> tuple[list[dict[str, Any]], int]:
    layers: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(
            st.sampled_from(["conv", "conv", "norm", "activation", "zero_pad", "max_pool", "avg_pool", "dropout"])
        )
        if kind == "conv":
            filters = draw(st.integers(1, 16))
            groups = draw(st.sampled_from([g for g in divisors(channels) if filters % g == 0]))
            layer: dict[str, Any] = {"type": "conv", "filters": filters}
            if groups > 1 or draw(st.booleans()):
                layer["groups"] = groups
            _maybe(draw, layer, "kernel_size", st.integers(1, 7) | st.lists(st.integers(1, 5), min_size=2, max_size=2))
            _maybe(draw, layer, "stride", st.integers(1, 2) | st.lists(st.integers(1, 3), min_size=2, max_size=2))
            _maybe(draw, layer, "padding", ANY_PADDING)
            _conv_extras(draw, layer)
            channels = filters
        elif kind == "zero_pad":
            layer = {
                "type": "zero_pad",
                "padding": draw(st.integers(0, 3) | st.lists(st.integers(0, 3), min_size=4, max_size=4)),
            }
        elif kind in ("max_pool", "avg_pool"):
            layer = _pool(draw, kind, preserve=False)
        else:
            layer = _simple_layer(draw, kind)
        layers.append(layer)
    return layers, channels


# --------------------------------------------------------------------------- custom blocks


@st.composite
def custom_block(draw: st.DrawFn, cin: int, filters: int, stride: int) -> tuple[dict[str, Any], int]:
    """A custom block whose branch gives ceil(n / stride) on both axes (so its add always matches
    in size); returns the block and its output channels."""
    layers: list[dict[str, Any]] = []
    c = cin
    convs = draw(st.integers(1 if stride > 1 else 0, 3))
    strided = draw(st.integers(0, convs - 1)) if convs else -1
    omitted_padding_kernels: list[tuple[int, int]] = []
    for i in range(convs):
        for _ in range(draw(st.integers(0, 2))):  # layers between convs
            kind = draw(st.sampled_from(["norm", "activation", "dropout", "max_pool", "avg_pool"]))
            layers.append(_pool(draw, kind, preserve=True) if kind.endswith("pool") else _simple_layer(draw, kind))
        last = i == convs - 1
        layer: dict[str, Any] = {"type": "conv"}
        how = draw(st.sampled_from(["stage", "ratio", "explicit"]))
        if how == "stage":
            out = filters
        elif how == "ratio":
            ratios = [r for r in (0.25, 0.5, 1.0, 1.5, 2.0) if (filters * r).is_integer() and filters * r >= 1]
            ratio = draw(st.sampled_from(ratios))
            layer["filters_ratio"] = ratio
            out = int(filters * ratio)
        else:
            out = draw(st.integers(1, 16))
            layer["filters"] = out
        groups = draw(st.sampled_from([g for g in divisors(c) if out % g == 0])) if i else 1
        if groups > 1:
            layer["groups"] = groups
        kernel = draw(st.sampled_from([1, 3, 3, 5]) | st.sampled_from([[1, 3], [3, 1], [2, 2]]))
        kh, kw = oracle.pair(kernel)
        if kernel != 3 or draw(st.booleans()):
            layer["kernel_size"] = kernel
        if i == strided:
            layer["stride"] = "block"
        pad_style = draw(st.sampled_from(["explicit", "cascade", "zero_pad"]))
        if pad_style == "zero_pad" and kh == kw and kh % 2 and i != strided:
            p = (kh - 1) // 2
            if p:
                layers.append({"type": "zero_pad", "padding": p})
            layer["padding"] = "valid"
        elif pad_style == "cascade":
            omitted_padding_kernels.append((kh, kw))
        else:
            layer["padding"] = draw(st.sampled_from(preserving_paddings(kh, kw)))
        _conv_extras(draw, layer)
        layers.append(layer)
        c = out
        if last:
            for _ in range(draw(st.integers(0, 2))):
                layers.append(_simple_layer(draw, draw(st.sampled_from(["norm", "activation", "dropout"]))))
    if not layers:
        layers.append(_simple_layer(draw, draw(st.sampled_from(["norm", "activation", "dropout"]))))
    block: dict[str, Any] = {"layers": layers}
    defaults = draw(settings(None))
    if omitted_padding_kernels:
        defaults["padding"] = draw(st.sampled_from(preserving_for_all(omitted_padding_kernels)))
    if defaults:
        block["defaults"] = defaults
    _maybe(draw, block, "activation_after_add", st.booleans())
    return block, c


# --------------------------------------------------------------------------- stages


def _shortcut_kinds(changes: list[tuple[int, int, bool]]) -> list[str]:
    """Kinds that fit every (in, out, changes) triple of the blocks that use the shortcut."""
    kinds = ["projection", "avg_pool_projection"]
    if all(out >= cin for cin, out, change in changes if change):
        kinds.append("zero_pad")
    if not any(change for _, _, change in changes):
        kinds.append("identity")
    return kinds


@st.composite
def shortcut(draw: st.DrawFn, kinds: list[str], preact: bool) -> Any:
    kind = draw(st.sampled_from(kinds))
    if draw(st.booleans()):
        return kind
    value: dict[str, Any] = {"kind": kind}
    if kind in ("projection", "avg_pool_projection"):
        _maybe(draw, value, "norm", st.booleans())
        _maybe(draw, value, "bias", st.booleans())
        _maybe(draw, value, "every_block", st.booleans())
        _maybe(draw, value, "same_channels", st.sampled_from(["projection", "subsample"]))
        _maybe(draw, value, "order", st.sampled_from(["branch_first", "shortcut_first"]))
        if preact:  # `source` belongs to the projections of pre-activation blocks
            _maybe(draw, value, "source", st.sampled_from(["preactivated", "block_input"]))
    return value


@st.composite
def bottleneck_shape(
    draw: st.DrawFn, stage: dict[str, Any], with_basic: bool = False, filters: int | None = None
) -> None:
    """filters, groups, width_per_group or bottleneck_ratio, and width_multiplier, such that the
    inner width is whole and divisible by groups."""
    groups = draw(st.sampled_from([1, 1, 2, 4]))
    # A basic block in the same stage multiplies its width too: keep wm at 1 then.
    wm = 1.0 if with_basic else draw(st.sampled_from([1.0, 1.0, 2.0, 0.5]))
    per_group = draw(st.integers(1, 4)) * (2 if wm == 0.5 else 1)
    stage["filters"] = filters if filters is not None else draw(st.integers(1, 32))
    if groups > 1 or draw(st.booleans()):
        stage["groups"] = groups
    if wm != 1.0 or draw(st.integers(0, 3)) == 0:
        stage["width_multiplier"] = wm
    if draw(st.booleans()):
        stage["width_per_group"] = per_group  # inner = groups * per_group * wm
    else:
        stage["bottleneck_ratio"] = stage["filters"] * wm / (groups * per_group)  # inner = filters / ratio * wm


def _custom_name(draw: st.DrawFn, taken: set[str]) -> str:
    name = draw(st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z"))
    while name in taken or name in BUILTIN:
        name += "_"
    return name


@st.composite
def valid_specs(draw: st.DrawFn, *, max_stages: int = 5, training: bool = False) -> dict[str, Any]:
    """A valid spec dict (see the module docstring)."""
    channels = draw(st.integers(1, 4))
    spec: dict[str, Any] = {"version": 1}
    _maybe(draw, spec, "name", st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=20))
    spec["input"] = {"height": 0, "width": 0, "channels": channels}  # sizes drawn at the end
    spec["classes"] = draw(st.integers(1, 12))
    top = draw(settings(ANY_PADDING))
    if top:
        spec["defaults"] = top
    stem_layers, c = draw(stem(channels))
    if stem_layers or draw(st.booleans()):
        spec["stem"] = stem_layers

    n_stages = draw(st.integers(1, max_stages))
    # Block counts: explicit, or derived from `depth` (stages without `blocks` share one n).
    style = draw(st.sampled_from(["blocks", "blocks", "depth_check", "depth_derive"]))
    shared_n = draw(st.integers(1, 3))
    open_flags = [style == "depth_derive" and draw(st.booleans()) for _ in range(n_stages)]
    if style == "depth_derive" and not any(open_flags):
        open_flags[0] = True

    stages: list[dict[str, Any]] = []
    blocks: dict[str, Any] = {}
    budget = MAX_BLOCKS
    network_drop = draw(st.integers(0, 5)) == 0  # a network-wide stochastic-depth schedule instead of stage rates
    for index in range(n_stages):
        kind = draw(st.sampled_from([*BUILTIN, "custom"]))
        first = draw(st.sampled_from([*BUILTIN, "custom"])) if draw(st.integers(0, 4)) == 0 else None
        if first == kind and kind != "custom":
            first = None  # `first_block` naming the stage's own kind is refused (RS111)
        stage: dict[str, Any] = {}
        count = shared_n if open_flags[index] else draw(st.integers(1, max(1, min(3, budget - (n_stages - index - 1)))))
        budget -= count
        keep = draw(st.integers(0, 3)) == 0  # a stage that keeps the shape: identity shortcuts fit
        stride = 1 if keep else draw(st.sampled_from([1, 1, 2, 2, 3]))
        if keep and first in BOTTLENECKS and kind not in BOTTLENECKS and c % 4:
            first = None  # that first block would take the default bottleneck_ratio 4 of c channels
        # A stage has the options of its `block`; a first_block of another kind takes the shared ones.
        if kind in BOTTLENECKS:
            draw(bottleneck_shape(stage, with_basic=first in BASICS, filters=c if keep else None))
            _maybe(draw, stage, "stride_placement", st.sampled_from(["first_1x1", "3x3"]))
        elif first in BOTTLENECKS:  # default ratio 4 and groups 1 there: filters / 4 must be whole
            stage["filters"] = c if keep else 4 * draw(st.integers(1, 8))
        else:
            stage["filters"] = c if keep else draw(st.integers(1, 32))
            if not keep and kind in BASICS and draw(st.integers(0, 3)) == 0:
                options = [m for m in (1.0, 2.0, 0.5, 1.5) if (stage["filters"] * m).is_integer()]
                stage["width_multiplier"] = draw(st.sampled_from(options))
        stage["block"] = _custom_name(draw, set(blocks)) if kind == "custom" else kind
        if first == "custom":
            stage["first_block"] = _custom_name(draw, {*blocks, stage["block"]})
        elif first is not None:
            stage["first_block"] = first
        if stride != 1 and count > 1 and draw(st.integers(0, 3)) == 0:
            stage["stride_block"] = "last"
        strided = count - 1 if stage.get("stride_block") == "last" else 0
        # Walk the blocks to learn their channels, drawing custom blocks on first use.
        triples_stage: list[tuple[int, int, bool]] = []
        triples_custom: dict[str, list[tuple[int, int, bool]]] = {}
        cin = c
        for b in range(count):
            k = stage.get("first_block") if b == 0 and stage.get("first_block") else stage["block"]
            s = stride if b == strided else 1
            if k in BUILTIN:
                out = oracle._block_channels(cin, k, {**stage, "block": k}, {"blocks": {}})
            elif k in blocks:
                out = oracle._layers_channels(cin, blocks[k]["layers"], stage["filters"])
            else:
                blocks[k], out = draw(custom_block(cin, stage["filters"], s))
            triple = (cin, out, out != cin or s != 1)
            (triples_custom.setdefault(k, []) if k in blocks else triples_stage).append(triple)
            cin = out
        for role in ("block", "first_block"):  # a custom kind the walk never reached (blocks: 1)
            k = stage.get(role)
            if k is not None and k not in BUILTIN and k not in blocks:
                blocks[k], _ = draw(custom_block(cin, stage["filters"], 1))
        # A custom block gets its own shortcut sometimes; otherwise it uses the stage's.
        for name, triples in triples_custom.items():
            if draw(st.integers(0, 2)) == 0:
                blocks[name]["shortcut"] = draw(shortcut(_shortcut_kinds(triples), preact=False))
            else:
                triples_stage.extend(triples)
        kinds = _shortcut_kinds(triples_stage)
        named = [k for k in (stage["block"], stage.get("first_block")) if k]
        if all(k in blocks and "shortcut" in blocks[k] for k in named):
            pass  # every kind of the stage brings its own shortcut: the stage's is refused as unused
        elif draw(st.integers(0, 2)):
            stage["shortcut"] = draw(shortcut(kinds, preact=stage["block"] in ("preact_basic", "preact_bottleneck")))
        elif "projection" not in kinds:  # the default is projection
            stage["shortcut"] = draw(st.sampled_from(kinds))
        if stride != 1 or draw(st.booleans()):
            stage["stride"] = stride
        stage["blocks"] = count
        _maybe(draw, stage, "squeeze_excite", st.fixed_dictionaries({}, optional={"reduction": st.integers(1, 8)}))
        if not network_drop:
            _maybe(draw, stage, "stochastic_depth_rate", rates)
        if kind in BASICS:
            _maybe(draw, stage, "dropout_between_convs", rates)
        if kind in ("basic", "bottleneck"):
            _maybe(draw, stage, "zero_init_last_norm", st.booleans())
        if kind in BUILTIN and draw(st.integers(0, 3)) == 0:
            names = ["conv1", "conv2"] + (["conv3"] if kind in BOTTLENECKS else [])
            stage["layer_bias"] = draw(st.fixed_dictionaries({}, optional=dict.fromkeys(names, st.booleans())))
        # Paddings a built-in block can inherit without breaking its add.
        kinds_here = {stage["block"], stage.get("first_block") or stage["block"]}
        if kinds_here & {"bottleneck", "preact_bottleneck"}:
            allowed: list[Any] | None = ["same", "symmetric"]
        elif kinds_here & {"basic", "preact_basic"}:
            allowed = preserving_paddings(3, 3)
        else:
            allowed = None  # custom blocks carry their own paddings
        inherited = (top or {}).get("padding", "same")
        stage_defaults = draw(settings(st.sampled_from(allowed) if allowed else ANY_PADDING))
        if allowed is not None and inherited not in allowed and "padding" not in stage_defaults:
            stage_defaults["padding"] = draw(st.sampled_from(allowed))
        if stage_defaults:
            stage["defaults"] = stage_defaults
        stages.append(stage)
        c = cin
    spec["stages"] = stages
    if blocks:
        spec["blocks"] = blocks
    if draw(st.integers(0, 15)) == 0:  # an unused custom block is legal
        spec.setdefault("blocks", {})["unused"] = {"layers": [{"type": "norm"}]}

    counts = [s["blocks"] for s in stages]
    if network_drop:  # a linear schedule over one block would give it rate 0 (refused)
        schedule = draw(st.sampled_from(["linear", "constant"])) if sum(counts) > 1 else "constant"
        spec["stochastic_depth"] = {"rate": draw(st.sampled_from([0.1, 0.2, 0.5])), "schedule": schedule}
    if style == "depth_check":
        spec["depth"] = oracle.total_depth(spec, counts)
    elif style == "depth_derive":
        per_n = sum(oracle.block_depth(spec, s["block"]) for s, o in zip(stages, open_flags) if o)
        if per_n:  # with no conv in the open stages no n gives the depth: keep `blocks` then
            spec["depth"] = oracle.total_depth(spec, counts)
            for s, o in zip(stages, open_flags):
                if o:
                    del s["blocks"]
    try:
        oracle.body_channels(spec)
    except oracle.Invalid as problem:
        raise AssertionError(f"strategy built an invalid channel plan: {problem}\n{spec}") from problem

    # Input sizes the structure accepts.
    heights = oracle.valid_sizes(spec, 0, range(1, MAX_SIZE + 1))
    widths = oracle.valid_sizes(spec, 1, range(1, MAX_SIZE + 1))
    assume(heights and widths)
    spec["input"]["height"] = draw(st.sampled_from(heights))
    spec["input"]["width"] = draw(st.sampled_from(widths))
    body = oracle.predict({**spec, "head": {"layers": [{"type": "global_avg_pool"}]}}).body
    head = draw(heads(body))
    if head is not None:
        spec["head"] = head
    if training:
        _maybe(draw, spec, "training", training_section(spec["input"]))
    return spec


@st.composite
def heads(draw: st.DrawFn, body: tuple[int, int, int]) -> dict[str, Any] | None:
    h, w, c = body
    style = draw(st.sampled_from(["default", "gap", "gap", "pool_flatten", "flatten", "pool_gap"]))
    if style == "default":
        return None if draw(st.booleans()) else {}
    layers: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        layers.append(_simple_layer(draw, draw(st.sampled_from(["norm", "activation", "dropout"]))))
    if style == "gap":
        layers.append({"type": "global_avg_pool"})
    elif style == "pool_flatten":
        layer = {"type": draw(st.sampled_from(["avg_pool", "max_pool"])), "pool_size": [h, w] if h != w else h}
        if draw(st.booleans()):
            layer["padding"] = "valid"
        layers += [layer, {"type": "flatten"}]
    elif style == "flatten" and h * w * c <= 2048:
        layers.append({"type": "flatten"})
    else:
        layers += [{"type": "max_pool", "pool_size": 2, "stride": 2, "padding": "same"}, {"type": "global_avg_pool"}]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["dense", "dense", "norm", "activation", "dropout"]))
        if kind == "dense":
            layer = {"type": "dense", "units": draw(st.integers(1, 16))}
            _maybe(draw, layer, "activation", st.sampled_from([*ACTIVATIONS, "linear"]))
            _maybe(draw, layer, "bias", st.booleans())
            _maybe(draw, layer, "initializer", st.sampled_from(INITIALIZERS))
            _maybe(draw, layer, "kernel_l2", kernel_l2)
            layers.append(layer)
        else:
            layers.append(_simple_layer(draw, kind))
    head: dict[str, Any] = {"layers": layers}
    _maybe(draw, head, "classifier", st.fixed_dictionaries({}, optional={
        "bias": st.booleans(), "initializer": st.sampled_from(INITIALIZERS), "kernel_l2": kernel_l2}))  # fmt: skip
    _maybe(draw, head, "output", st.sampled_from(["logits", "softmax"]))
    return head


@st.composite
def training_section(draw: st.DrawFn, input_shape: dict[str, int]) -> dict[str, Any]:
    section: dict[str, Any] = {}
    unit = draw(st.sampled_from(["epochs", "iterations"]))
    length = draw(st.integers(2, 500))
    section[unit] = length
    _maybe(draw, section, "batch_size", st.integers(1, 512))
    _maybe(draw, section, "optimizer", st.fixed_dictionaries({}, optional={
        "kind": st.sampled_from(["sgd", "adam", "adamw"]), "learning_rate": st.floats(1e-5, 1.0),
        "momentum": st.floats(0, 0.99), "nesterov": st.booleans(), "weight_decay": st.floats(0, 1e-3),
        "weight_decay_applies_to": st.sampled_from(["kernels", "all"])}))  # fmt: skip
    kind = draw(st.sampled_from(["constant", "piecewise", "cosine", None]))
    if kind == "piecewise":
        sched_unit = draw(st.sampled_from(["iteration", "epoch"]))
        limit = length if (sched_unit == "epoch") == (unit == "epochs") else None
        top = (limit - 1) if limit else 1000
        bounds = sorted(draw(st.sets(st.integers(1, max(1, top)), min_size=1, max_size=4)))
        mults = draw(st.lists(st.floats(0.001, 10), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
        if (
            limit is None
            and sched_unit == "epoch"
            and unit == "iterations"
            or limit is None
            and sched_unit == "iteration"
        ):
            pass  # the run length is in the other unit: nothing to check against
        section["schedule"] = {"kind": "piecewise", "unit": sched_unit, "boundaries": bounds, "multipliers": mults}
    elif kind == "cosine":
        section["schedule"] = {"kind": "cosine", "final_multiplier": draw(st.floats(0, 1))}
    elif kind == "constant":
        section["schedule"] = {"kind": "constant"}
    _maybe(draw, section, "warmup", st.fixed_dictionaries({"iterations": st.integers(1, 1000)}, optional={
        "start_multiplier": st.floats(0, 1)}))  # fmt: skip
    _maybe(draw, section, "loss", st.fixed_dictionaries({}, optional={"label_smoothing": st.floats(0, 0.5)}))
    _maybe(draw, section, "validation_split", st.floats(0, 0.5))
    crop_max = max(input_shape["height"], input_shape["width"])
    _maybe(draw, section, "augmentation", st.fixed_dictionaries({}, optional={
        "random_crop_padding": st.integers(0, crop_max), "horizontal_flip": st.booleans()}))  # fmt: skip
    modes = ["none", "scale", "per_pixel_mean", "per_channel_mean"] + (
        ["caffe", "torch"] if input_shape["channels"] == 3 else []
    )
    _maybe(draw, section, "preprocessing", st.fixed_dictionaries({"mode": st.sampled_from(modes)}))
    _maybe(draw, section, "execution", st.fixed_dictionaries({}, optional={
        "device": st.sampled_from(["auto", "cpu", "gpu"]), "mixed_precision": st.sampled_from(["none", "float16", "bfloat16"]),
        "channels_last": st.booleans(), "compile": st.booleans()}))  # fmt: skip
    _maybe(draw, section, "seed", st.integers(0, 2**32 - 1))
    return section


# --------------------------------------------------------------------------- mutations


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a nested dict/list document, the root excluded."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.append((*prefix, k))
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.append((*prefix, i))
            found += paths(v, (*prefix, i))
    return found


def get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _typo(draw: st.DrawFn, word: str) -> str:
    if not word:
        return "x"
    i = draw(st.integers(0, len(word) - 1))
    op = draw(st.sampled_from(["drop", "double", "swap", "replace", "case", "dash"]))
    if op == "drop":
        return word[:i] + word[i + 1 :] or "x"
    if op == "double":
        return word[:i] + word[i] + word[i:]
    if op == "swap" and len(word) > 1:
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "case":
        return word.upper()
    if op == "dash":
        return word.replace("_", "-") if "_" in word else word + "s"
    return word[:i] + draw(st.sampled_from(string.ascii_lowercase)) + word[i + 1 :]


def _show(value: Any) -> str:
    """repr() for the edit log; integers past 4,300 digits cannot be turned into text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return show_int(value)
    return repr(value)


def extreme_numbers() -> st.SearchStrategy[Any]:
    huge = [10**9, 10**12, 2**31, 2**63, 10**30, -(10**12)]
    if not is_open("huge_filters_overflow") and not is_open("huge_depth_overflow"):
        huge += [10**400]
    if not any(is_open(r) for r in ("huge_filters_str_digits", "huge_depth_str_digits")):
        huge += [10**4000]
    if not is_open("huge_int_mapping"):
        huge += [10**5000]
    return st.sampled_from(
        [0, -1, -3, 1, 2**31 - 1, *huge, 1e-300, 1e300, float("inf"), float("-inf"), float("nan"), 0.5, -0.0]
    )


# Mutable values are built fresh for every draw: a shared st.just([]) that a later edit appends to
# would change what every following test case draws (hypothesis calls that a flaky strategy).
WRONG_TYPES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), st.just("3"), st.builds(list), st.builds(dict),
    st.lists(st.integers(-2, 5), max_size=5), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.floats(allow_nan=True), st.builds(lambda: [1, "a", None]), st.builds(lambda: {"kind": "projection"}), st.just("block"),
)  # fmt: skip

STRUCTURAL = [
    "delete", "typo_key", "wrong_type", "extreme", "unknown_key", "drop_item", "duplicate_item",
    "stride_breaks_add", "zero_pad_shrinks", "valid_padding", "unknown_kind", "depth", "swap_type",
    "null_value", "swap_values", "inflate",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, spec: dict[str, Any], max_edits: int = 3) -> tuple[dict[str, Any], list[str]]:
    """1..max_edits random edits of ``spec``; returns the new document and a log of the edits."""
    doc = copy.deepcopy(spec)
    log: list[str] = []
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(STRUCTURAL))
        where = paths(doc)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = get(doc, path[:-1])
        key = path[-1]
        try:
            log.append(_apply(draw, op, doc, parent, key, path))
        except _Skip:
            continue
        doc = copy.deepcopy(doc)  # detach values the edit took from shared constants before the next edit
    _avoid_open_bugs(doc)
    return doc, log


class _Skip(Exception):
    pass


def _avoid_open_bugs(doc: Any) -> None:
    """Undo edits that would only rediscover an open bug (see tests/regressions/*.yaml)."""
    if is_open("pool_padding_null"):
        pools = [get(doc, p) for p in paths(doc)]
        for value in pools:
            if (
                isinstance(value, dict)
                and value.get("type") in ("max_pool", "avg_pool")
                and "padding" in value
                and value["padding"] is None
            ):
                del value["padding"]
    if is_open("depth_from_convless_custom_block") and isinstance(doc, dict) and "depth" in doc:
        # A stage without `blocks` whose kind has no conv makes `depth` divide by zero: give it blocks.
        blocks = doc.get("blocks") if isinstance(doc.get("blocks"), dict) else {}
        stages = doc.get("stages")
        for stage in stages if isinstance(stages, list) else []:
            if not isinstance(stage, dict) or "blocks" in stage:
                continue
            kind = stage.get("block", "basic")
            custom = blocks.get(kind) if isinstance(kind, str) else None
            layers = custom.get("layers") if isinstance(custom, dict) else None
            if isinstance(layers, list) and not any(isinstance(x, dict) and x.get("type") == "conv" for x in layers):
                stage["blocks"] = 1


def _apply(draw: st.DrawFn, op: str, doc: dict[str, Any], parent: Any, key: Any, path: tuple[Any, ...]) -> str:
    if op == "delete":
        del parent[key]
        return f"delete {path}"
    if op == "typo_key":
        if not isinstance(parent, dict):
            raise _Skip
        new = _typo(draw, str(key))
        parent[new] = parent.pop(key)
        return f"rename {path} -> {new}"
    if op == "wrong_type":
        parent[key] = draw(WRONG_TYPES)
        return f"set {path} = {_show(parent[key])}"
    if op == "extreme":
        parent[key] = draw(extreme_numbers())
        return f"set {path} = {_show(parent[key])}"
    if op == "null_value":
        parent[key] = None
        return f"set {path} = None"
    if op == "unknown_key":
        target = get(doc, path) if isinstance(get(doc, path), dict) else (parent if isinstance(parent, dict) else doc)
        name = draw(st.sampled_from(["strides", "filter", "kernel", "padding_mode", "momentum", "layers", "type", "x"]))
        target[name] = draw(st.integers(0, 3) | st.just("same"))
        return f"add key {name}"
    if op in ("drop_item", "duplicate_item"):
        lists = [p for p in paths(doc) if isinstance(get(doc, p), list) and get(doc, p)]
        if not lists:
            raise _Skip
        lpath = draw(st.sampled_from(lists))
        items = get(doc, lpath)
        i = draw(st.integers(0, len(items) - 1))
        if op == "drop_item":
            del items[i]
        else:
            items.insert(i, copy.deepcopy(items[i]))
        return f"{op} {lpath}[{i}]"
    if op == "swap_values":
        other = draw(st.sampled_from(paths(doc)))
        if other[: len(path)] == path or path[: len(other)] == other:
            raise _Skip
        a, b = get(doc, path), get(doc, other)
        parent[key] = copy.deepcopy(b)
        get(doc, other[:-1])[other[-1]] = copy.deepcopy(a)
        return f"swap {path} <-> {other}"
    stages = doc.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise _Skip
    i = draw(st.integers(0, len(stages) - 1))
    stage = stages[i]
    if op == "stride_breaks_add":
        stage["stride"] = draw(st.sampled_from([2, 3, 4, 16]))
        stage["shortcut"] = draw(st.sampled_from(["identity", {"kind": "identity"}]))
        return f"stages.{i}: stride {stage['stride']} with an identity shortcut"
    if op == "zero_pad_shrinks":
        if i == 0:
            raise _Skip
        prev = stages[i - 1].get("filters")
        stage["filters"] = max(1, (prev if isinstance(prev, int) and prev < 10**6 else 8) // 2)
        stage["shortcut"] = "zero_pad"
        return f"stages.{i}: zero_pad shortcut shrinking channels"
    if op == "valid_padding":
        stage.setdefault("defaults", {})
        if not isinstance(stage["defaults"], dict):
            raise _Skip
        stage["defaults"]["padding"] = draw(st.sampled_from(["valid", 0, 2, [0, 0, 1, 1], [3, 0, 0, 0]]))
        return f"stages.{i}.defaults.padding = {stage['defaults']['padding']}"
    if op == "inflate":  # aim at the size budget's boundary, where an estimate can be wrong
        what = draw(st.sampled_from(["filters", "ratio", "per_group", "first_bottleneck", "units", "custom"]))
        big = 2 ** draw(st.integers(10, 17))
        if what == "filters":
            stage["filters"] = big
        elif what == "ratio":
            stage["bottleneck_ratio"] = draw(st.sampled_from([1 / 64, 0.125, 0.5]))
            stage["filters"] = big
        elif what == "per_group":
            stage["groups"], stage["width_per_group"] = draw(st.sampled_from([(64, big), (big, 64), (1, big)]))
        elif what == "first_bottleneck":
            stage["first_block"] = draw(st.sampled_from(["bottleneck", "preact_bottleneck"]))
            stage["bottleneck_ratio"] = 1 / 64
            stage["filters"] = big // 8
        elif what == "units":
            head = doc.setdefault("head", {}) if isinstance(doc.get("head", {}), dict) else {}
            head["layers"] = [{"type": "flatten"}, {"type": "dense", "units": big}]
        else:
            blocks = doc.get("blocks")
            if not isinstance(blocks, dict) or not blocks:
                raise _Skip
            name = draw(st.sampled_from(sorted(blocks)))
            layers = blocks[name].get("layers") if isinstance(blocks[name], dict) else None
            if not isinstance(layers, list):
                raise _Skip
            layers.append({"type": "conv", "filters": big, "kernel_size": draw(st.sampled_from([1, 3, 7, 64]))})
        return f"inflate {what} of stages.{i} ({big})"
    if op == "unknown_kind":
        kind = stage.get("block", "basic")
        stage["block"] = _typo(draw, kind if isinstance(kind, str) else "basic")
        return f"stages.{i}.block = {stage['block']}"
    if op == "depth":
        doc["depth"] = draw(st.integers(1, 200) | extreme_numbers())
        if draw(st.booleans()):
            stage.pop("blocks", None)
        return f"depth = {_show(doc['depth'])}"
    if op == "swap_type":
        layers = [p for p in paths(doc) if p and p[-1] == "type"]
        if not layers:
            raise _Skip
        tpath = draw(st.sampled_from(layers))
        get(doc, tpath[:-1])["type"] = draw(st.sampled_from(
            ["conv", "norm", "activation", "zero_pad", "max_pool", "avg_pool", "dropout", "global_avg_pool",
             "flatten", "dense", "pool", "Conv", "batchnorm"]))  # fmt: skip
        return f"{tpath} = {get(doc, tpath)}"
    raise AssertionError(op)


# --------------------------------------------------------------------------- text mutations


@st.composite
def mutated_text(draw: st.DrawFn, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "delete_line", "indent", "dedent", "insert", "dup_line",
                                   "swap_lines", "tab", "splice"]))  # fmt: skip
        if not data:
            data = bytearray(b"x")
        lines = bytes(data).split(b"\n")
        if op == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op in ("delete_line", "indent", "dedent", "dup_line", "tab"):
            i = draw(st.integers(0, len(lines) - 1))
            if op == "delete_line":
                del lines[i]
            elif op == "indent":
                lines[i] = b" " * draw(st.integers(1, 4)) + lines[i]
            elif op == "dedent":
                lines[i] = lines[i].lstrip(b" ")
            elif op == "tab":
                lines[i] = b"\t" + lines[i]
            else:
                lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        elif op == "swap_lines" and len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 2))
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            data = bytearray(b"\n".join(lines))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            piece = draw(st.sampled_from([b":", b"-", b"- ", b"{", b"}", b"[", b"]", b"&a ", b"*a", b"!!python/object:os.system ",
                                          b"!!binary ", b"<<: ", b"#", b"'", b'"', b"\x00", b"\xff", b"\xc3", b"1e9999",
                                          b"99999999999999999999", b"null", b"~", b"? ", b"|\n", b"---\n", b"...\n", b"%YAML 1.1\n"]))  # fmt: skip
            data[i:i] = piece
        else:  # splice a random piece of the text elsewhere
            a = draw(st.integers(0, len(data)))
            b = draw(st.integers(a, min(len(data), a + 40)))
            piece = bytes(data[a:b])
            j = draw(st.integers(0, len(data)))
            data[j:j] = piece
    return bytes(data)


def numbers_in(value: Any) -> int:
    """How many numbers a document holds (a cheap size measure for reports)."""
    if isinstance(value, dict):
        return sum(numbers_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(numbers_in(v) for v in value)
    return int(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
