"""Zero silent options: for every block kind and every stage, shortcut and network option, a value
other than the base network's either changes the canonical form (the network built) or is
refused with a located diagnostic. The options come from the models themselves, so a new option
without a probe here fails the test.

The base network puts the stage under test where its options can act: it changes channels and
stride (16 -> 64 channels, stride 2), has three blocks (first, middle, last differ), and custom
blocks come in two shapes, one that begins with a pre-activation and ends with a norm and one
that does neither."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import resnet_spec
from resnet_spec.blocks.options import shortcut_models
from resnet_spec.blocks.registry import ALL, KINDS
from resnet_spec.canonical import canonical_json

UNIT = [  # begins with a pre-activation, ends with a norm
    {"type": "norm"}, {"type": "activation"},
    {"type": "conv", "filters_ratio": 0.25, "kernel_size": 1},
    {"type": "norm"}, {"type": "activation"}, {"type": "conv", "filters_ratio": 0.25, "stride": "block"},
    {"type": "norm"}, {"type": "activation"}, {"type": "conv", "kernel_size": 1}, {"type": "norm"},
]  # fmt: skip
PLAIN = [{"type": "conv", "stride": "block"}, {"type": "norm"}, {"type": "activation"}, {"type": "conv"}]
KIND_CASES = [*KINDS, "unit", "plain"]  # the built-in kinds and two custom blocks


def base(kind: str) -> dict[str, Any]:
    return {
        "version": 1, "input": {"height": 16, "width": 16, "channels": 3}, "classes": 4,
        "blocks": {"unit": {"layers": UNIT}, "plain": {"layers": PLAIN}},
        "stem": [{"type": "conv", "filters": 16}, {"type": "norm"}, {"type": "activation"}],
        "stages": [
            {"block": "basic", "blocks": 1, "filters": 16},
            {"block": kind, "blocks": 3, "filters": 64, "stride": 2},
        ],
    }  # fmt: skip


# option -> (value unlike the base's, extra stage settings it needs to act). Values of mappings
# (squeeze_excite, layer_bias, defaults) probe each of their fields below.
STAGE_PROBES: dict[str, tuple[Any, dict[str, Any]]] = {
    "first_block": (None, {}),  # filled per kind: another kind
    "blocks": (2, {}),
    "filters": (128, {}),
    "stride": (1, {}),
    "stride_block": ("last", {}),
    "squeeze_excite": ({"reduction": 4}, {}),
    "stochastic_depth_rate": (0.1, {}),
    "width_multiplier": (2.0, {}),
    "dropout_between_convs": (0.3, {}),
    "zero_init_last_norm": (True, {}),
    "stride_placement": ("first_1x1", {}),
    "bottleneck_ratio": (2.0, {}),
    "groups": (2, {}),
    "width_per_group": (8, {}),
}
FIELD_PROBES: dict[str, Any] = {  # sub-options: mapping option -> {field: value}
    "squeeze_excite": {"reduction": 8},
    "layer_bias": {"conv1": True, "conv2": True, "conv3": True},
    "defaults": {"activation": "silu", "initializer": "glorot_uniform", "conv_bias": True, "kernel_l2": 1e-4,
                 "padding": "symmetric", "norm": {"epsilon": 1e-3}},
}  # fmt: skip
SHORTCUT_PROBES: dict[str, tuple[Any, dict[str, Any]]] = {
    "kind": ("avg_pool_projection", {}),
    "norm": (False, {}),
    "bias": (True, {}),
    "every_block": (True, {}),
    "same_channels": ("subsample", {"stride_block": "last"}),  # the last block strides but keeps its channels
    "order": ("shortcut_first", {}),
    "source": ("block_input", {}),
}


def canonical(spec: dict[str, Any]) -> str | None:
    result = resnet_spec.validate(spec)
    return canonical_json(result.architecture.graph) if result.ok and result.architecture else None


def refused_at(spec: dict[str, Any], prefix: tuple[Any, ...]) -> list[str]:
    """The codes of the errors located at or under ``prefix`` (empty if the spec is accepted)."""
    result = resnet_spec.validate(spec)
    return [d.code for d in result.report.errors if d.key_path[: len(prefix)] == prefix]


def assert_not_silent(spec: dict[str, Any], reference: str, at: tuple[Any, ...]) -> str:
    """'changed' or 'refused'; fails if the spec is accepted and builds the reference network."""
    result = resnet_spec.validate(spec)
    if not result.ok:
        assert refused_at(spec, at), f"refused, but not at {at}: {[(d.code, d.key) for d in result.report.errors]}"
        return "refused"
    assert result.architecture is not None
    assert canonical_json(result.architecture.graph) != reference, f"{at} was accepted and changed nothing"
    return "changed"


def _stage_fields() -> set[str]:
    return {name for kind in ALL for name in kind.options.model_fields} - {"block", "shortcut"}


def test_every_option_has_a_probe() -> None:
    nested = {"squeeze_excite", "layer_bias", "defaults"}
    assert _stage_fields() <= set(STAGE_PROBES) | nested
    projection = shortcut_models(preact=True)["projection"]
    assert set(projection.model_fields) <= set(SHORTCUT_PROBES)
    from resnet_spec.blocks.basic import BasicLayerBias
    from resnet_spec.blocks.bottleneck import BottleneckLayerBias
    from resnet_spec.spec import LayerSettings, SqueezeExcite

    assert set(BottleneckLayerBias.model_fields) | set(BasicLayerBias.model_fields) <= set(FIELD_PROBES["layer_bias"])
    assert set(SqueezeExcite.model_fields) <= set(FIELD_PROBES["squeeze_excite"])
    assert set(LayerSettings.model_fields) <= set(FIELD_PROBES["defaults"])


def _with(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    spec = base(kind)
    spec["stages"][1].update(copy.deepcopy(settings))
    return spec


def _model_of(kind: str) -> Any:
    return (KINDS.get(kind) or ALL[-1]).options


@pytest.mark.parametrize("kind", KIND_CASES)
@pytest.mark.parametrize("option", sorted(STAGE_PROBES))
def test_stage_option_is_never_silent(kind: str, option: str) -> None:
    value, needs = STAGE_PROBES[option]
    if option == "first_block":
        value = "bottleneck" if kind == "basic" else "basic"
    reference = canonical(_with(kind, needs))
    assert reference is not None
    outcome = assert_not_silent(_with(kind, {**needs, option: value}), reference, ("stages", 1))
    if option in _model_of(kind).model_fields and not (kind == "plain" and option == "zero_init_last_norm"):
        assert outcome == "changed", f"{option} is an option of {kind} stages and must be accepted"
    else:
        assert "RS111" in refused_at(_with(kind, {**needs, option: value}), ("stages", 1, option))


@pytest.mark.parametrize("kind", KIND_CASES)
@pytest.mark.parametrize(("option", "field"), [(o, f) for o, fields in FIELD_PROBES.items() for f in fields])
def test_fields_of_nested_options_are_never_silent(kind: str, option: str, field: str) -> None:
    start: dict[str, Any] = {"squeeze_excite": {"reduction": 4}} if option == "squeeze_excite" else {}
    reference = canonical(_with(kind, start))
    assert reference is not None
    probe = {**start, option: {**start.get(option, {}), field: FIELD_PROBES[option][field]}}
    outcome = assert_not_silent(_with(kind, probe), reference, ("stages", 1))
    model = _model_of(kind)
    applies = option in model.model_fields and (
        option != "layer_bias" or field in model.model_fields["layer_bias"].annotation.model_fields
    )
    assert (outcome == "changed") == applies, (kind, option, field, outcome)


@pytest.mark.parametrize("kind", KIND_CASES)
@pytest.mark.parametrize("shortcut_kind", ["projection", "avg_pool_projection", "zero_pad", "identity"])
@pytest.mark.parametrize("option", sorted(SHORTCUT_PROBES))
def test_shortcut_option_is_never_silent(kind: str, shortcut_kind: str, option: str) -> None:
    value, needs = SHORTCUT_PROBES[option]
    if option == "kind" and shortcut_kind != "projection":
        return  # the kind itself is probed from the default projection
    if shortcut_kind == "identity":  # only where nothing changes shape (elsewhere it is RS201)
        needs = {**needs, "filters": 16, "stride": 1}
    start = {**needs, "shortcut": {"kind": shortcut_kind}}
    reference = canonical(_with(kind, start))
    assert reference is not None
    probe = {**needs, "shortcut": {"kind": shortcut_kind, option: value}}
    outcome = assert_not_silent(_with(kind, probe), reference, ("stages", 1))
    preact = kind in ("preact_basic", "preact_bottleneck", "unit")
    if option in shortcut_models(preact=preact)[shortcut_kind].model_fields:
        assert outcome == "changed", (kind, shortcut_kind, option)


def test_network_stochastic_depth_is_never_silent() -> None:
    reference = canonical(base("basic"))
    for value in ({"rate": 0.2}, {"rate": 0.2, "schedule": "constant"}):
        spec = base("basic")
        spec["stochastic_depth"] = value
        assert assert_not_silent(spec, reference or "", ("stochastic_depth",)) == "changed"


def test_a_stage_rate_and_a_network_schedule_contradict() -> None:
    spec = _with("basic", {"stochastic_depth_rate": 0.1})
    spec["stochastic_depth"] = {"rate": 0.2}
    assert refused_at(spec, ("stages", 1, "stochastic_depth_rate")) == ["RS107"]
