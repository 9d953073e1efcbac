"""Block kinds as registered objects: what custom blocks now honour, the network-wide
stochastic-depth schedule against timm, the size budget against the exact counts, the JSON
Schema's per-kind fields, and the language reference generated from the models."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import resnet_spec
from resnet_spec import graph as g
from resnet_spec import schema
from resnet_spec.blocks import reference
from resnet_spec.blocks.registry import ALL
from resnet_spec.budget import estimate
from resnet_spec.depth import resolve

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

V2_UNIT = [  # a keras.applications ResNet50V2 block written as a custom block
    {"type": "norm"}, {"type": "activation"},
    {"type": "conv", "filters_ratio": 0.25, "kernel_size": 1, "bias": False},
    {"type": "norm"}, {"type": "activation"},
    {"type": "conv", "filters_ratio": 0.25, "stride": "block", "padding": "symmetric", "bias": False},
    {"type": "norm"}, {"type": "activation"}, {"type": "conv", "kernel_size": 1},
]  # fmt: skip


def net(stage: dict[str, Any], blocks: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    spec = {
        "version": 1, "input": {"height": 16, "width": 16, "channels": 3}, "classes": 4,
        "stem": [{"type": "conv", "filters": 16}, {"type": "norm"}, {"type": "activation"}],
        "stages": [{"filters": 64, "stride": 2, "blocks": 2, **stage}], **top,
    }  # fmt: skip
    if blocks:
        spec["blocks"] = blocks
    return spec


def graph_of(spec: dict[str, Any]) -> g.Graph:
    return resnet_spec.build_architecture(spec).graph


# --------------------------------------------------------------------------- custom blocks


def test_custom_block_projection_reads_its_preactivation() -> None:
    blocks = {"v2": {"layers": V2_UNIT, "activation_after_add": False}}
    preactivated = graph_of(net({"block": "v2"}, blocks))
    assert preactivated["stage1.block0.shortcut.conv"].inputs == ("stage1.block0.act1",)
    raw = graph_of(net({"block": "v2", "shortcut": {"kind": "projection", "source": "block_input"}}, blocks))
    assert raw["stage1.block0.shortcut.conv"].inputs == ("stem.act1",)
    # Written as a custom block, the unit is the built-in preact_bottleneck with Keras' biases.
    builtin = graph_of(net({"block": "preact_bottleneck", "layer_bias": {"conv1": False, "conv2": False},
                            "defaults": {"conv_bias": True, "padding": "symmetric"}}))  # fmt: skip
    custom = graph_of(net({"block": "v2", "defaults": {"conv_bias": True, "padding": "symmetric"}}, blocks))
    assert resnet_spec.canonical.canonical_json(custom) == resnet_spec.canonical.canonical_json(builtin)


def test_custom_blocks_get_squeeze_excite_stochastic_depth_and_zero_init() -> None:
    blocks = {"two": {"layers": [{"type": "conv", "stride": "block"}, {"type": "norm"}, {"type": "activation"},
                                 {"type": "conv"}, {"type": "norm"}]}}  # fmt: skip
    graph = graph_of(net({"block": "two", "squeeze_excite": {"reduction": 4}, "stochastic_depth_rate": 0.2,
                          "zero_init_last_norm": True}, blocks))  # fmt: skip
    assert graph["stage1.block0.se.pool"].inputs == ("stage1.block0.norm2",)
    assert graph["stage1.block0.se.reduce"].filters == 16  # type: ignore[attr-defined]
    assert graph["stage1.block0.drop_path"].inputs == ("stage1.block0.se.scale",)
    assert graph["stage1.block0.norm2"].zero_init and not graph["stage1.block0.norm1"].zero_init  # type: ignore[attr-defined]
    assert graph["stage1.block1.norm2"].zero_init  # type: ignore[attr-defined]  # the copied block too


def test_zero_init_is_applied_once_for_every_kind_that_ends_in_a_norm() -> None:
    for kind, last in (("basic", "norm2"), ("bottleneck", "norm3")):
        graph = graph_of(net({"block": kind, "zero_init_last_norm": True}))
        zeroed = [n.name for n in graph if isinstance(n, g.BatchNorm) and n.zero_init]
        assert zeroed == [f"stage1.block{b}.{last}" for b in (0, 1)], kind


def test_stride_on_the_last_block_and_a_subsampling_shortcut() -> None:
    graph = graph_of(net({"block": "basic", "filters": 16, "blocks": 3, "stride_block": "last",
                          "shortcut": {"kind": "projection", "same_channels": "subsample"}}))  # fmt: skip
    assert [graph[f"stage1.block{b}.conv1"].strides for b in range(3)] == [(1, 1), (1, 1), (2, 2)]  # type: ignore[attr-defined]
    pad = graph["stage1.block2.shortcut.subsample"]
    assert isinstance(pad, g.ChannelPadShortcut) and (pad.stride, pad.pad_before, pad.pad_after) == (2, 0, 0)


def test_first_block_of_another_kind_takes_the_shared_options() -> None:
    graph = graph_of(net({"block": "preact_bottleneck", "first_block": "bottleneck", "bottleneck_ratio": 2,
                          "groups": 2, "layer_bias": {"conv3": True}}))  # fmt: skip
    assert graph["stage1.block0.conv2"].filters == graph["stage1.block1.conv2"].filters == 32  # type: ignore[attr-defined]
    assert graph["stage1.block0.conv2"].groups == 2 and graph["stage1.block0.conv3"].use_bias  # type: ignore[attr-defined]
    assert "stage1.block0.out_act" in [n.name for n in graph]  # a post-activation first block


# --------------------------------------------------------------------------- stochastic depth


def test_linear_schedule_is_timms_drop_path_rate() -> None:
    pytest.importorskip("torch")
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet50", drop_path_rate=0.1, pretrained=False)
    theirs = [b.drop_path.drop_prob if b.drop_path is not None else 0.0
              for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]  # fmt: skip
    data = resnet_spec.load(REPO / "examples" / "resnet50.yaml").data
    arch = resnet_spec.build_architecture({**data, "stochastic_depth": {"rate": 0.1}})
    rates = {n.name.rsplit(".", 1)[0]: n.rate for n in arch.graph if isinstance(n, g.DropPath)}
    blocks = [n.name.rsplit(".", 1)[0] for n in arch.graph if isinstance(n, g.Add)]
    assert [rates.get(block, 0.0) for block in blocks] == theirs  # exactly: the same float expression


# --------------------------------------------------------------------------- size budget


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_budget_estimate_bounds_the_exact_size(path: Path) -> None:
    arch = resnet_spec.build_architecture(path)
    depth, _ = resolve(arch.spec)
    assert depth is not None
    found = estimate(arch.spec, depth.block_counts)
    exact = arch.params_trainable + arch.params_non_trainable
    assert exact <= found.params <= 2 * exact
    assert len(arch.graph) <= found.nodes <= 2 * len(arch.graph)


# --------------------------------------------------------------------------- schema and docs


def test_json_schema_gives_each_kind_its_own_fields() -> None:
    validator = jsonschema.Draft202012Validator(schema.generate())
    assert validator.is_valid(net({"block": "bottleneck", "groups": 4}))
    assert not validator.is_valid(net({"block": "basic", "groups": 4}))
    assert validator.is_valid(net({"block": "preact_basic", "shortcut": {"kind": "projection", "source": "block_input"}}))
    assert not validator.is_valid(net({"block": "basic", "shortcut": {"kind": "projection", "source": "block_input"}}))
    assert not validator.is_valid(net({"block": "basic", "shortcut": {"kind": "zero_pad", "norm": False}}))
    assert validator.is_valid(net({"block": "unit"}, {"unit": {"layers": [{"type": "conv"}]}}))
    assert validator.is_valid(net({"block": "basic", "shortcut": "zero_pad"}))


def test_language_reference_lists_each_kind_with_exactly_its_options() -> None:
    text = (REPO / "docs" / "spec-language.md").read_text(encoding="utf-8")
    assert reference.section() in text, "run `python -m resnet_spec.blocks.reference docs/spec-language.md`"
    for kind in ALL:  # a heading and the summary of each kind
        assert kind.summary in text and ("#### custom blocks" if kind.name == "custom" else f"#### `{kind.name}`") in text
