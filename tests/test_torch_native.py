"""The torch model's native structure: stages and blocks are modules whose ``forward`` runs (so
``model.stage3(x)`` works and hooks on them fire), ``forward_features`` / ``reset_classifier``
as timm has them, and one walk behind ``forward``, hooks and ``node_outputs``: on every example
they agree exactly (not within a tolerance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import resnet_spec

torch = pytest.importorskip("torch")
from resnet_spec_torch.model import Group, ResNet
from resnet_spec_torch.probe import Neutral

from resnet_spec.backends import get_backend

pytestmark = pytest.mark.torch

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
BACKEND: Any = get_backend("torch")
# Building a network costs more than walking it: the examples over 3M parameters (drawing their
# initial weights takes seconds each) are checked in the slow profile, all but resnet50, the
# network whose C5 issue 16 measured.
SLOW = {
    "keras_applications_resnet50", "keras_resnet101v2_imagenet", "keras_resnet50_imagenet", "keras_resnet50v2_imagenet",
    "resnet101", "resnet1202_cifar10", "resnet152", "resnet18", "resnet18_xray", "resnet34", "resnet34_cifar10",
    "resnet50_backbone", "resnet50_signs", "resnet_v2_110_cifar10", "resnet_v2_56_cifar10", "resnext50_32x4d",
    "timm_resnet50d", "timm_resnetv2_50", "timm_seresnet50", "wide_resnet28_10_cifar10", "wide_resnet50_2",
}  # fmt: skip


def _reduced(path: Path) -> list[str]:
    """ImageNet specs whose head pools globally take any input size: 64x64 here (the walk under
    test does not depend on the size; tests/test_fidelity.py reduces the same ones)."""
    arch = resnet_spec.build_architecture(path)
    if arch.spec.input.height >= 128 and all(layer.type == "global_avg_pool" for layer in arch.spec.head.layers[:1]):
        return ["input.height=64", "input.width=64"]
    return []


def _batch(arch: Any, n: int = 2) -> np.ndarray:
    h, w, c = arch.graph.input.shape
    return np.random.default_rng(0).standard_normal((n, h, w, c)).astype("float32")


def _nchw(images: np.ndarray) -> Any:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _forward_with_hooks(model: ResNet, x: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """forward's result, every leaf module's output and every group's output, as hooks see them
    (cloned at once: a later module may work in place)."""
    leaves: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        store = groups if isinstance(module, Group) else leaves

        def hook(_: Any, __: Any, out: Any, name: str = name, store: dict[str, Any] = store) -> None:
            store[name] = tuple(o.detach().clone() for o in out) if isinstance(out, tuple) else out.detach().clone()

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, leaves, groups


def _cases() -> list[Any]:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else []) for p in EXAMPLES]


def test_the_slow_cases_are_the_big_examples() -> None:
    big = {p.stem for p in EXAMPLES if resnet_spec.build_architecture(p).params_trainable > 3_000_000}
    assert big - {"resnet50"} == SLOW


@pytest.mark.parametrize("path", _cases())
def test_node_outputs_equal_forward_and_hooks_exactly(path: Path) -> None:
    arch = resnet_spec.build_architecture(path, overrides=_reduced(path))
    model = BACKEND.build(arch, seed=0).eval()
    images = _batch(arch)
    out, leaves, groups = _forward_with_hooks(model, _nchw(images))
    nodes = BACKEND.node_outputs(model, arch, images)
    neutral = Neutral(arch)
    assert set(leaves) == set(nodes) - {arch.graph.input.name}  # every node's module ran, once per forward
    for name, value in leaves.items():
        assert np.array_equal(neutral.output(name, value), nodes[name], equal_nan=True), name
    returned = out if isinstance(out, dict) else {arch.graph.output: out}
    for name, node in arch.graph.named_outputs().items():
        assert np.array_equal(neutral.output(node, returned[name]), nodes[node], equal_nan=True), name
    # Every stage and block ran as a module: its hook saw what its last node made.
    for name, value in groups.items():
        group = model.get_submodule(name)
        values = value if isinstance(value, tuple) else (value,)
        assert len(values) == len(group.output_names)
        for node, tensor in zip(group.output_names, values):
            assert np.array_equal(neutral.output(node, tensor), nodes[node], equal_nan=True), (name, node)
    assert {f"stage{i + 1}" for i in range(len(arch.spec.stages))} <= set(groups)


def test_stages_and_blocks_run_on_their_own() -> None:
    arch = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml")
    model = BACKEND.build(arch, seed=0).eval()
    x = _nchw(_batch(arch))
    values = model.capture(x)
    with torch.no_grad():
        stage3 = model.stage3(values["stage2.block2.out_act"])
        block = model.stage2.block0(values["stage1.block2.out_act"])
        stem = model.stem(x)
    assert stage3.shape == (2, 64, 8, 8) and torch.equal(stage3, values["stage3.block2.out_act"])
    assert torch.equal(block, values["stage2.block0.out_act"])
    assert torch.equal(stem, values["stem.act1"])
    assert model.stage3.input_names == ("stage2.block2.out_act",)
    assert model.stage3.output_names == ("stage3.block2.out_act",)
    assert "inputs=['stage2.block2.out_act'], outputs=['stage3.block2.out_act']" in repr(model.stage3)
    with pytest.raises(TypeError, match="takes 1 input"):
        model.stage3(x, x)


def test_a_group_with_two_outputs_returns_a_tuple() -> None:
    """A backbone output inside a block makes that node an output of its block and stage too."""
    data = resnet_spec.load("examples/resnet20_cifar10.yaml").data
    assert data is not None
    for key in ("classes", "head", "training", "depth"):
        data.pop(key)
    data["head"] = {"features": ["stage2.block0.norm1", "stage2"]}
    arch = resnet_spec.build_architecture(data)
    model = BACKEND.build(arch, seed=0).eval()
    assert model.stage2.block0.output_names == ("stage2.block0.norm1", "stage2.block0.out_act")
    x = _nchw(_batch(arch))
    values = model.capture(x)
    with torch.no_grad():
        inner, last = model.stage2.block0(values["stage1.block2.out_act"])
        out = model(x)
    assert torch.equal(inner, values["stage2.block0.norm1"]) and torch.equal(last, values["stage2.block0.out_act"])
    assert torch.equal(out["stage2.block0.norm1"], inner)  # not overwritten by the ReLU after it
    assert list(out) == ["stage2.block0.norm1", "stage2"]


def test_forward_features_and_reset_classifier_as_timm(tmp_path: Path) -> None:
    arch = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml")
    model = BACKEND.build(arch, seed=0).eval()
    x = _nchw(_batch(arch))
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert torch.equal(features, model.capture(x)["stage3.block2.out_act"])
    with torch.no_grad():
        assert torch.allclose(model.head.classifier(features.mean((2, 3))), logits, rtol=1e-6, atol=1e-6)
    model.reset_classifier(5)
    assert model.head.classifier.out_features == 5 and model.head.classifier.in_features == 64
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    model.reset_classifier(0)  # timm: the pooled features
    with torch.no_grad():
        assert torch.equal(model(x), features.mean((2, 3)))
    with pytest.raises(ValueError, match="must be >= 0"):
        model.reset_classifier(-1)
    model.reset_classifier(3)  # and back from the pooled features
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    with pytest.raises(Exception, match="reset_classifier"):
        BACKEND.save(model, arch, resnet_spec.load("examples/resnet20_cifar10.yaml").data, tmp_path / "never.pt")


def test_logits_of_a_softmax_spec_come_from_the_same_walk() -> None:
    from resnet_spec_torch.inference import logits_net

    arch = resnet_spec.build_architecture("examples/resnet_v2_11_cifar10.yaml")
    model = BACKEND.build(arch, seed=0).eval()
    x = _nchw(_batch(arch))
    with torch.no_grad():
        logits = logits_net(model, arch)(x)
    assert torch.equal(logits, model.capture(x)["head.classifier"])
    assert torch.allclose(logits.softmax(1), model(x), rtol=0, atol=1e-7)


def test_state_dict_keys_are_the_graph_names() -> None:
    arch = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml")
    keys = list(BACKEND.build(arch, seed=0).state_dict())
    assert keys[:3] == ["stem.conv1.weight", "stem.conv1.bias", "stem.norm1.weight"]
    assert keys[-2:] == ["head.classifier.weight", "head.classifier.bias"]
