"""The importer's framework-free core: matching by structure and shapes on files written here
in torchvision's and keras.applications' conventions (tests/import_helpers.py), located
mismatch messages, the classifier options, and that reading and matching need no framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from import_helpers import (
    assert_same_weights,
    random_weights,
    tiny,
    torch_layout,
    torchvision_state_dict,
    write_keras3_weights,
    write_legacy_h5,
)

from resnet_spec.importing import WeightsImportError, import_weights
from resnet_spec.importing.skeleton import Leaf, Merge, StructureError, skeleton
from resnet_spec.importing.source import GraphOp, natural_key

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["state-dict", "safetensors"])
def test_torchvision_state_dict_imports_exactly(kind: str, tmp_path: Path) -> None:
    """A state dict keeps its modules' order; a safetensors file sorts its names (bn1 before conv1)."""
    from safetensors.numpy import save_file

    arch = tiny()
    weights = random_weights(arch)
    source: object = torchvision_state_dict(weights)
    if kind == "safetensors":
        save_file(
            {k: np.ascontiguousarray(v) for k, v in torchvision_state_dict(weights).items()}, str(tmp_path / "w.st")
        )
        source = tmp_path / "w.st"
    result = import_weights(arch, source)
    assert_same_weights(result.weights, weights)
    assert result.method == "names"
    # conv3 and the projection have one shape; structure (the downsample container) decides.
    assert result.matched["stage1.block0.shortcut.conv"] == {"kernel": "layer1.0.downsample.0.weight"}
    assert result.matched["stage1.block0.conv3"] == {"kernel": "layer1.0.conv3.weight"}
    assert result.matched["stage1.block0.shortcut.norm"]["moving_variance"] == "layer1.0.downsample.1.running_var"


def test_equal_shapes_take_the_files_order_or_numbered_names_or_fail(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    # Two 32-channel norms in the head (over the map, over the dense features), named so that
    # their names say nothing of their order: pre_bn / post_bn.
    arch = tiny("head.layers=[{type: norm}, {type: global_avg_pool}, {type: dense, units: 32}, {type: norm}]")
    weights = random_weights(arch, seed=6)
    rename = {"head.norm1": "pre_bn", "head.norm2": "post_bn"}
    state = {}
    for key, value in torchvision_state_dict(weights).items():
        module, _, tensor = key.rpartition(".")
        state[f"{rename.get(module, module)}.{tensor}"] = value
    assert_same_weights(import_weights(arch, state).weights, weights)  # the state dict's order decides
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp_path / "w.st"))
    with pytest.raises(
        WeightsImportError, match=r"head\.norm1: post_bn and pre_bn both fit, and this file keeps no order"
    ):
        import_weights(arch, tmp_path / "w.st")


@pytest.mark.parametrize("writer", [write_keras3_weights, write_legacy_h5], ids=["keras3", "legacy"])
def test_keras_weights_files_import_exactly(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    arch = tiny()
    weights = random_weights(arch, seed=1)
    path = tmp_path / "w.weights.h5"
    writer(path, weights)
    result = import_weights(arch, path)
    assert_same_weights(result.weights, weights)
    # The shortcut is Keras' "_0_" group only because the branch then runs 1, 2, 3 in name order.
    assert result.matched["stage1.block0.shortcut.conv"]["kernel"].startswith("conv2_block1_0_conv/")
    assert result.matched["stage1.block0.conv3"]["kernel"].startswith("conv2_block1_3_conv/")


def test_numbers_in_names_order_the_blocks() -> None:
    arch = tiny("stages.0.blocks=12")  # layer1.10 and layer1.11 sort after layer1.9, not after layer1.1
    weights = random_weights(arch, seed=2)
    result = import_weights(arch, torchvision_state_dict(weights))
    assert_same_weights(result.weights, weights)
    assert result.matched["stage1.block10.conv2"] == {"kernel": "layer1.10.conv2.weight"}


def test_a_shortcut_that_structure_cannot_tell_is_an_error_not_a_guess() -> None:
    arch = tiny()
    state = torchvision_state_dict(random_weights(arch))
    for key in list(state):  # the projection as loose layers conv4 / bn4, beside conv3 / bn3
        if key.startswith("layer1.0.downsample."):
            state[key.replace("downsample.0", "conv4").replace("downsample.1", "bn4")] = state.pop(key)
    with pytest.raises(WeightsImportError, match=r"stage1\.block0: the source's shortcut is ambiguous: it could be"):
        import_weights(arch, state)


def test_a_mismatch_names_the_node_the_shapes_and_the_source_tensor() -> None:
    state = torchvision_state_dict(random_weights(tiny()))
    with pytest.raises(WeightsImportError) as info:
        import_weights(tiny("classes=7"), state)
    assert str(info.value) == (
        "a state dict of 77 tensors: head.classifier.kernel: expected shape (32, 7) (neutral layout), the source "
        "has fc.weight (5, 32) there, (32, 5) in the neutral layout (outside the source's blocks)"
    )
    with pytest.raises(WeightsImportError) as info:
        import_weights(tiny("stages.1.filters=64"), state)
    message = str(info.value)
    assert "\n" not in message
    # The first node (in graph order) whose shape the source's block has no tensor left for: conv1's
    # 1x1 16 -> 32 exists there (as conv3), the wider 3x3 does not.
    assert message.startswith(
        "a state dict of 77 tensors: stage2.block0.conv2: expected a 3x3 conv 32 -> 32 without bias (kernel (3, 3, 32, 32)); "
        "the source's block at that place, layer2.0, has no such tensor left (it holds layer2.0.conv1.weight (16, 16, 1, 1), "
        "layer2.0.conv2.weight (16, 16, 3, 3)"
    )


def test_classifier_import_new_and_auto() -> None:
    weights = random_weights(tiny())
    state = torchvision_state_dict(weights)
    other = tiny("classes=7")
    auto = import_weights(other, state, classifier="auto")
    assert auto.new == ["head.classifier"] and "head.classifier" not in auto.weights
    assert auto.unused == ["fc.weight", "fc.bias"]
    assert auto.notes[0].startswith(
        "head.classifier is new: the source's classifier does not fit it (head.classifier.kernel"
    )
    base = random_weights(other, seed=9)
    complete = auto.complete(base)
    np.testing.assert_array_equal(complete["head.classifier"]["kernel"], base["head.classifier"]["kernel"])
    np.testing.assert_array_equal(complete["stem.conv1"]["kernel"], weights["stem.conv1"]["kernel"])
    with pytest.raises(WeightsImportError, match="no weights given for the new layers head.classifier"):
        auto.complete({})
    same = import_weights(tiny(), state, classifier="auto")
    assert same.new == [] and not any(n.startswith("head.classifier is new") for n in same.notes)
    new = import_weights(tiny(), state, classifier="new")
    assert new.new == ["head.classifier"] and set(new.weights) == set(weights) - {"head.classifier"}
    with pytest.raises(WeightsImportError, match=r"exclude: 'stage1' names no head layer"):
        import_weights(tiny(), state, exclude=["stage1"])


def test_a_source_without_a_classifier_fills_a_new_one() -> None:
    state = {k: v for k, v in torchvision_state_dict(random_weights(tiny())).items() if not k.startswith("fc.")}
    with pytest.raises(WeightsImportError, match="head.classifier: expected a 1x1 conv or dense layer 32 -> 5"):
        import_weights(tiny(), state)
    assert import_weights(tiny(), state, classifier="new").new == ["head.classifier"]


def test_weights_the_spec_has_no_place_for_are_an_error() -> None:
    state = torchvision_state_dict(random_weights(tiny()))
    state["aux.weight"] = np.ones((3, 32), np.float32)
    with pytest.raises(
        WeightsImportError,
        match=r"weights outside its blocks that the spec has no place for: aux \(aux\.weight \(3, 32\)\)",
    ):
        import_weights(tiny(), state)
    state = torchvision_state_dict(random_weights(tiny()))
    state["layer1.0.conv1.weight_g"] = np.ones((8, 1, 1, 1), np.float32)
    with pytest.raises(WeightsImportError, match=r"layer1\.0\.conv1\.weight_g: not a weight a spec can hold"):
        import_weights(tiny(), state)


def test_dense_rows_after_a_channels_first_flatten_are_reordered() -> None:
    """torch.flatten of an NCHW map orders features (c, h, w); the neutral layout (h, w, c)."""
    arch = tiny("head.layers=[{type: avg_pool, pool_size: 4}, {type: flatten}]")  # 8x8x32 -> 2x2x32
    weights = random_weights(arch, seed=4)
    state = torchvision_state_dict(weights)
    neutral = weights["head.classifier"]["kernel"]  # rows (h, w, c)
    torch_rows = np.empty_like(neutral)
    for h in range(2):
        for w in range(2):
            for c in range(32):
                torch_rows[c * 4 + h * 2 + w] = neutral[(h * 2 + w) * 32 + c]
    state["fc.weight"] = torch_layout("kernel", torch_rows)
    assert_same_weights(import_weights(arch, state).weights, weights)


def test_skeleton_pairs_residuals_whatever_the_add_order_and_finds_gates() -> None:
    def units(*names: str) -> list[GraphOp]:
        return [GraphOp("conv", (), name, unit=name) for name in names]

    # x -> a -> b ; shortcut c(x); add(c, b)  (shortcut first, as "shortcut + x" writes it)
    ops = [GraphOp("input", (), "in"), *units("a", "b", "c"), GraphOp("add", (), "sum")]
    ops[1].inputs, ops[2].inputs, ops[3].inputs, ops[4].inputs = (0,), (1,), (0,), (3, 2)
    [merge] = skeleton(ops, 4)
    assert isinstance(merge, Merge) and not merge.ordered
    assert [[leaf.label for leaf in side if isinstance(leaf, Leaf)] for side in merge.sides] == [["c"], ["a", "b"]]
    # squeeze-excite: y = a(x); g = b(pool(y)); y * g
    ops = [GraphOp("input", (), "in"), GraphOp("conv", (0,), "a", unit="a"), GraphOp("other", (1,), "pool"),
           GraphOp("conv", (2,), "b", unit="b"), GraphOp("mul", (1, 3), "scale")]  # fmt: skip
    first, gate = skeleton(ops, 4)
    assert isinstance(first, Leaf) and first.label == "a"
    assert isinstance(gate, Merge) and gate.kind == "mul" and [len(s) for s in gate.sides] == [0, 1]
    ops = [GraphOp("input", (), "in"), *units("a", "b"), GraphOp("other", (), "cat")]
    ops[1].inputs, ops[2].inputs, ops[3].inputs = (0,), (0,), (1, 2)
    with pytest.raises(StructureError, match="'cat' merges two paths"):
        skeleton(ops, 3)


def test_natural_key_compares_numbers_as_numbers() -> None:
    names = [
        "layer1.10.conv1",
        "layer1.9.conv1",
        "layer1.1.conv1",
        "bn1",
        "fc",
        "conv2_block10_0_conv",
        "conv2_block2_0_conv",
    ]
    ordered = sorted(names, key=lambda n: natural_key(tuple(n.split("."))))
    assert ordered == [
        "bn1",
        "conv2_block2_0_conv",
        "conv2_block10_0_conv",
        "fc",
        "layer1.1.conv1",
        "layer1.9.conv1",
        "layer1.10.conv1",
    ]


PROBE = """
import sys
sys.path.insert(0, "tests")
from resnet_spec.importing import import_weights
from import_helpers import tiny
arch = tiny()
print(len(import_weights(arch, sys.argv[1]).weights), len(import_weights(arch, sys.argv[2]).weights))
print(sorted(m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules))
"""


def test_files_are_read_and_matched_without_any_framework(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    weights = random_weights(tiny())
    save_file(
        {k: np.ascontiguousarray(v) for k, v in torchvision_state_dict(weights).items()},
        str(tmp_path / "w.safetensors"),
    )
    write_keras3_weights(tmp_path / "w.weights.h5", weights)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(tmp_path / "w.safetensors"), str(tmp_path / "w.weights.h5")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    nodes = len(weights)
    assert proc.stdout.split("\n")[:2] == [f"{nodes} {nodes}", "[]"]
