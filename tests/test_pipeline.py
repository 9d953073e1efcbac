"""The core pipeline: spec -> graph with shapes, parameters and MACs; depth rules; hashes; API."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import resnet_spec
from resnet_spec import graph as g
from resnet_spec.diagnostics import SpecError, catalogue_markdown
from resnet_spec.shapes import same_padding


def cifar(depth: int | None = 20, shortcut: str = "zero_pad", **stage_extra: Any) -> dict[str, Any]:
    stage = lambda filters, stride: {"block": "basic", "filters": filters, "stride": stride, "shortcut": shortcut, **stage_extra}
    spec: dict[str, Any] = {
        "version": 1,
        "input": {"height": 32, "width": 32, "channels": 3},
        "classes": 10,
        "stem": [{"type": "conv", "filters": 16, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
        "stages": [stage(16, 1), stage(32, 2), stage(64, 2)],
    }
    if depth is not None:
        spec["depth"] = depth
    return spec


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(8, 3, 2, (0, 1)), (224, 7, 2, (2, 3)), (32, 3, 1, (1, 1)), (7, 3, 2, (1, 1)), (4, 1, 2, (0, 0)), (112, 3, 2, (0, 1))],
)
def test_same_padding_is_tensorflows_rule(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    """Values from TensorFlow's documented formula (parity-notes: H=8,k=3,s=2 -> (0,1); 224,7,2 -> (2,3))."""
    assert same_padding(size, kernel, stride) == expected


def test_resnet20_option_a_matches_the_paper() -> None:
    arch = resnet_spec.build_architecture(cifar())
    assert round(arch.params_trainable / 1e6, 2) == 0.27
    assert arch.output_shape == (10,)
    assert arch.shape_of("stage2.block0.shortcut.pad") == (16, 16, 32)
    pad = arch.graph["stage2.block0.shortcut.pad"]
    assert isinstance(pad, g.ChannelPadShortcut) and (pad.pad_before, pad.pad_after) == (8, 8)


def test_every_padding_is_resolved_per_side() -> None:
    arch = resnet_spec.build_architecture(cifar())
    conv = arch.graph["stage2.block0.conv1"]
    assert isinstance(conv, g.Conv2D) and conv.padding == (0, 1, 0, 1)  # 32 -> 16 with k=3, s=2
    for node in arch.graph:
        padding = getattr(node, "padding", (0, 0, 0, 0))
        assert isinstance(padding, tuple) and len(padding) == 4, node.name


def test_names_are_hierarchical_and_deterministic() -> None:
    first = [n.name for n in resnet_spec.build_architecture(cifar()).graph]
    assert first == [n.name for n in resnet_spec.build_architecture(cifar()).graph]
    assert first[:3] == ["input", "stem.conv1", "stem.norm1"]
    assert "stage3.block2.out_act" in first and first[-1] == "head.classifier"


@pytest.mark.parametrize(("depth", "n"), [(20, 3), (32, 5), (44, 7), (56, 9), (110, 18)])
def test_depth_shorthand_expands_to_block_counts(depth: int, n: int) -> None:
    arch = resnet_spec.build_architecture(cifar(depth))
    blocks = {name.split(".")[1] for name in (x.name for x in arch.graph) if name.startswith("stage1.")}
    assert len(blocks) == n


def test_depth_error_explains_itself() -> None:
    result = resnet_spec.validate(cifar(21))
    (diag,) = result.report.errors
    assert diag.code == "RS205"
    assert diag.message == "depth 21 gives n = 3.17 (depth = 6n + 2); nearest valid depths: 20, 26"


def test_declared_depth_is_checked_against_explicit_blocks() -> None:
    spec = cifar(depth=32)
    for stage in spec["stages"]:
        stage["blocks"] = 3
    (diag,) = resnet_spec.validate(spec).report.errors
    assert diag.code == "RS205" and "= 20" in diag.message


def test_shorthand_and_explicit_counts_give_one_hash() -> None:
    explicit = cifar(depth=None)
    for stage in explicit["stages"]:
        stage["blocks"] = 3
    explicit["name"] = "another name"
    assert resnet_spec.build_architecture(explicit).hash == resnet_spec.build_architecture(cifar(20)).hash
    assert resnet_spec.build_architecture(cifar(32)).hash != resnet_spec.build_architecture(cifar(20)).hash


def test_settings_cascade_layer_over_stage_over_defaults() -> None:
    spec = cifar()
    spec["defaults"] = {"conv_bias": True, "norm": {"epsilon": 0.001, "running_stats_decay": 0.99}}
    spec["stages"][1]["defaults"] = {"conv_bias": False, "norm": {"epsilon": 0.01}}
    spec["stem"][1] = {"type": "norm", "epsilon": 0.5}
    graph = resnet_spec.build_architecture(spec).graph
    assert graph["stage1.block0.conv1"].use_bias and not graph["stage2.block0.conv1"].use_bias  # type: ignore[attr-defined]
    assert graph["stage2.block0.norm1"].epsilon == 0.01 and graph["stage2.block0.norm1"].decay == 0.99  # type: ignore[attr-defined]
    assert graph["stem.norm1"].epsilon == 0.5 and graph["stage1.block0.norm1"].epsilon == 0.001  # type: ignore[attr-defined]


def test_every_bad_add_is_reported_in_one_pass() -> None:
    errors = resnet_spec.validate(cifar(shortcut="identity")).report.errors
    assert [(d.code, d.key_path) for d in errors] == [
        ("RS201", ("stages", 1, "shortcut")), ("RS201", ("stages", 2, "shortcut")),
    ]  # fmt: skip
    assert "16x16x32" in errors[0].message and "32x32x16" in errors[0].message and "stage2.block0" in errors[0].message


def test_schema_problems_are_all_reported_together() -> None:
    spec = cifar()
    spec["stages"][0]["filterz"] = 3
    spec["defaults"] = {"activation": "rleu"}
    spec["classes"] = 0
    codes = sorted(d.code for d in resnet_spec.validate(spec).report.errors)
    assert codes == ["RS101", "RS104", "RS105"]


def test_overrides_go_through_validation() -> None:
    arch = resnet_spec.build_architecture(cifar(), overrides=["depth=56", "stages.1.shortcut=projection"])
    assert "stage2.block0.shortcut.conv" in [n.name for n in arch.graph]
    result = resnet_spec.validate(cifar(), overrides=["stages.1.stride=0"])
    assert [d.code for d in result.report.errors] == ["RS105"]


def test_validate_never_raises_build_does() -> None:
    assert not resnet_spec.validate({"version": 1}).ok
    with pytest.raises(SpecError) as info:
        resnet_spec.build_architecture(cifar(21))
    assert isinstance(info.value, ValueError) and info.value.diagnostics[0].code == "RS205"


def test_bottleneck_stride_placement_and_widths() -> None:
    spec = cifar(depth=None)
    spec["stages"] = [{"block": "bottleneck", "blocks": 1, "filters": 256, "stride": 2, "shortcut": "projection"}]
    v15 = resnet_spec.build_architecture(spec).graph
    assert v15["stage1.block0.conv2"].strides == (2, 2) and v15["stage1.block0.conv1"].filters == 64  # type: ignore[attr-defined]
    spec["stages"][0].update(stride_placement="first_1x1", groups=32, width_per_group=4)
    v1 = resnet_spec.build_architecture(spec).graph
    assert v1["stage1.block0.conv1"].strides == (2, 2) and v1["stage1.block0.conv2"].groups == 32  # type: ignore[attr-defined]
    assert v1["stage1.block0.conv2"].filters == 128  # type: ignore[attr-defined]


def test_preactivation_block_has_no_activation_after_add() -> None:
    spec = cifar(depth=None)
    spec["stages"] = [{"block": "preact_basic", "blocks": 2, "filters": 32, "shortcut": "projection"}]
    graph = resnet_spec.build_architecture(spec).graph
    names = [n.name for n in graph]
    assert "stage1.block0.out_act" not in names
    # The projection reads the pre-activated input (He et al. 2016), the identity the raw one.
    assert graph["stage1.block0.shortcut.conv"].inputs == ("stage1.block0.act1",)
    assert graph["stage1.block1.add"].inputs[1] == "stage1.block0.add"


def test_resnet_d_shortcut_and_squeeze_excite() -> None:
    spec = cifar(depth=None, shortcut="avg_pool_projection", squeeze_excite={"reduction": 4}, blocks=1)
    arch = resnet_spec.build_architecture(spec)
    pool = arch.graph["stage2.block0.shortcut.pool"]
    assert isinstance(pool, g.AvgPool) and not pool.count_padding and arch.shape_of(pool.name) == (16, 16, 16)
    assert arch.shape_of("stage2.block0.se.reduce") == (1, 1, 8)


def test_head_input_sizes_are_derived() -> None:
    spec = cifar()
    spec["head"] = {"layers": [{"type": "avg_pool", "pool_size": 8}, {"type": "flatten"}, {"type": "dense", "units": 32, "activation": "relu"}]}
    arch = resnet_spec.build_architecture(spec)
    assert arch.shape_of("head.flatten1") == (64,)
    assert arch.analysis.info["head.dense1"].params_trainable == 64 * 32 + 32


def test_absurd_sizes_are_refused_before_allocation() -> None:
    spec = cifar(depth=None, blocks=100_000)
    (diag,) = resnet_spec.validate(spec).report.errors
    assert diag.code == "RS207" and "parameters" in diag.message and "GiB" in diag.message


def test_diagnostics_catalogue_doc_is_current() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "diagnostics.md"
    assert doc.read_text(encoding="utf-8") == catalogue_markdown(), "run `resnet-spec codes --markdown > docs/diagnostics.md`"


def test_spec_is_not_mutated_by_validation() -> None:
    spec = cifar()
    before = copy.deepcopy(spec)
    resnet_spec.validate(spec)
    assert spec == before
