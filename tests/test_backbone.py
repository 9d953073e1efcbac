"""Backbones: ``head.features`` makes a spec return named feature maps instead of class scores.

The language (references, located errors RS210 / RS211, `classes` no longer needed), the
summary's outputs (timm's feature_info), both backends' multi-output models, parity over every
output, and ResNet-50's C2..C5 against torchvision's ``create_feature_extractor`` after copying
torchvision's weights in by structure."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import resnet_spec
from resnet_spec.summary import output_rows, to_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def resnet20_backbone(features: Any = None) -> dict[str, Any]:
    """examples/resnet20_cifar10.yaml with its head, classes and training replaced by features."""
    data = yaml.safe_load((EXAMPLES / "resnet20_cifar10.yaml").read_text())
    for key in ("classes", "head", "training", "depth"):
        data.pop(key)
    data["head"] = {"features": features if features is not None else {"c3": "stage1", "c4": "stage2", "c5": "stage3"}}
    return data


def codes(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d.code, d.key) for d in resnet_spec.validate(data).diagnostics]


# --------------------------------------------------------------------------- the language


def test_resnet50_backbone_lists_c2_to_c5_as_timm_feature_info() -> None:
    """timm's resnet50(features_only=True).feature_info for out_indices (1, 2, 3, 4): num_chs
    256, 512, 1024, 2048 and reduction 4, 8, 16, 32 (its documented values)."""
    arch = resnet_spec.build_architecture(EXAMPLES / "resnet50_backbone.yaml")
    rows = output_rows(arch)
    assert [(r["name"], r["channels"], r["stride"]) for r in rows] == [
        ("c2", 256, 4), ("c3", 512, 8), ("c4", 1024, 16), ("c5", 2048, 32)]  # fmt: skip
    assert [r["node"] for r in rows] == [f"stage{i}.block{n - 1}.out_act" for i, n in ((1, 3), (2, 4), (3, 6), (4, 3))]
    assert rows[0]["shape"] == [56, 56, 256]
    assert arch.graph.output == "stage4.block2.out_act"
    text = to_text(arch)
    assert "4 outputs (a backbone):" in text and "c4  14x14x1024  1024 channels, stride 16  (stage3.block5.out_act)" in text


def test_classifier_summary_lists_its_one_output() -> None:
    arch = resnet_spec.build_architecture(EXAMPLES / "resnet20_cifar10.yaml")
    assert output_rows(arch) == [{"name": "head.classifier", "node": "head.classifier", "shape": [10], "channels": 10,
                                  "stride": None}]  # fmt: skip
    assert arch.graph.outputs == {}


def test_list_form_names_each_output_as_written_and_takes_node_names() -> None:
    arch = resnet_spec.build_architecture(resnet20_backbone(["stem", "stage2.block0.conv1", "stage3"]))
    assert arch.graph.outputs == {"stem": "stem.act1", "stage2.block0.conv1": "stage2.block0.conv1",
                                  "stage3": "stage3.block2.out_act"}  # fmt: skip
    assert not any(node.name.startswith("head.") for node in arch.graph)
    # A backbone's parameters are its classifier spec's less the classifier (64 * 10 + 10).
    classifier = resnet_spec.build_architecture(EXAMPLES / "resnet20_cifar10.yaml")
    assert arch.params_trainable == classifier.params_trainable - 650


def test_a_backbone_hash_depends_on_its_outputs() -> None:
    a = resnet_spec.build_architecture(resnet20_backbone({"c4": "stage2", "c5": "stage3"}))
    b = resnet_spec.build_architecture(resnet20_backbone({"c5": "stage3"}))
    c = resnet_spec.build_architecture(resnet20_backbone({"x": "stage2", "c5": "stage3"}))
    assert len({a.hash, b.hash, c.hash}) == 3


@pytest.mark.parametrize(("features", "expected"), [
    (["stage1", "stage4"], [("RS210", "head.features.1")]),
    ({"c2": "stage1", "c9": "stage9"}, [("RS210", "head.features.c9")]),
    (["stage3", "stage3.block2.out_act"], [("RS210", "head.features.1")]),  # the same node twice
    (["stage2.block0.nope"], [("RS210", "head.features.0")]),
])  # fmt: skip
def test_unknown_or_repeated_features_are_located(features: Any, expected: list[tuple[str, str]]) -> None:
    assert codes(resnet20_backbone(features)) == expected


def test_a_backbone_with_a_classifier_is_refused_at_each_contradiction() -> None:
    data = resnet20_backbone()
    data["classes"] = 10
    data["head"].update({"classifier": {"bias": True}, "output": "logits"})
    data["training"] = {"batch_size": 8, "epochs": 1}
    assert sorted(codes(data)) == [("RS211", "classes"), ("RS211", "head.classifier"), ("RS211", "head.output"),
                                   ("RS211", "training")]  # fmt: skip
    data = resnet20_backbone()
    data["head"]["layers"] = [{"type": "global_avg_pool"}]
    assert codes(data) == [("RS211", "head.layers")]


def test_classes_stay_required_for_a_classifier_head() -> None:
    data = resnet20_backbone()
    del data["head"]
    assert codes(data) == [("RS102", "classes")]


def test_backbone_depth_has_no_classifier() -> None:
    data = resnet20_backbone()
    data["depth"] = 19  # resnet20's 20 less its classifier
    assert resnet_spec.validate(data).ok
    data["depth"] = 20
    (problem,) = resnet_spec.validate(data).diagnostics
    assert problem.code == "RS205" and "(a backbone: no classifier) = 19" in problem.message


# --------------------------------------------------------------------------- torch


@pytest.mark.torch
def test_torch_backbone_returns_a_dict_in_spec_order() -> None:
    torch = pytest.importorskip("torch")
    from resnet_spec.backends import get_backend

    arch = resnet_spec.build_architecture(resnet20_backbone({"c5": "stage3", "c3": "stage1"}))
    backend = get_backend("torch")
    model = backend.build(arch, seed=0).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    assert list(out) == ["c5", "c3"]
    assert out["c5"].shape == (2, 64, 8, 8) and out["c3"].shape == (2, 16, 32, 32)
    nodes = backend.node_outputs(model, arch, x.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(out["c3"].permute(0, 2, 3, 1).numpy(), nodes["stage1.block2.out_act"])
    with pytest.raises(ValueError, match="no classifier"):
        model.reset_classifier(5)


def _torchvision() -> Any:
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip("torchvision")


@pytest.mark.torch
@pytest.mark.slow
def test_resnet50_backbone_equals_torchvision_create_feature_extractor() -> None:
    """torchvision's resnet50 (random weights, random batch-norm statistics) copied in by
    structure; C2..C5 against create_feature_extractor on layer1..layer4 (torch.fx), within
    1e-5 relative (measured: 0.0)."""
    torch = pytest.importorskip("torch")
    torchvision = _torchvision()
    from torchvision.models.feature_extraction import create_feature_extractor

    from resnet_spec.backends import get_backend
    from resnet_spec.importing import import_weights

    reference = torchvision.models.resnet50(weights=None).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
    arch = resnet_spec.build_architecture(EXAMPLES / "resnet50_backbone.yaml")
    result = import_weights(arch, reference.state_dict())
    assert result.unused == ["fc.weight", "fc.bias"] and result.new == []
    backend = get_backend("torch")
    model = backend.build(arch, seed=0)
    backend.set_weights(model, arch, result.complete(backend.get_weights(model, arch)))
    model.eval()
    extractor = create_feature_extractor(reference, {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"})
    x = torch.randn(2, 3, 224, 224, generator=generator)
    with torch.no_grad():
        theirs, ours = extractor(x), model(x)
    assert list(ours) == list(theirs) == ["c2", "c3", "c4", "c5"]
    for name in theirs:
        assert ours[name].shape == theirs[name].shape
        scale = float(theirs[name].abs().max())
        assert float((ours[name] - theirs[name]).abs().max()) <= 1e-5 * scale, name


# --------------------------------------------------------------------------- keras and parity


@pytest.mark.keras
def test_keras_backbone_is_a_multi_output_model() -> None:
    pytest.importorskip("tensorflow")
    from resnet_spec.backends import get_backend

    arch = resnet_spec.build_architecture(resnet20_backbone())
    backend = get_backend("keras")
    model = backend.build(arch)
    assert len(model.outputs) == 3
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    out = model(images, training=False)
    assert sorted(out) == ["c3", "c4", "c5"]
    nodes = backend.node_outputs(model, arch, images)
    for name, node in arch.graph.outputs.items():
        assert out[name].shape == (2, *arch.shape_of(node))
        np.testing.assert_allclose(np.asarray(out[name]), nodes[node], rtol=1e-5, atol=1e-5)


@pytest.mark.keras
@pytest.mark.torch
def test_parity_compares_every_feature_output_and_trains_on_their_mean_squares() -> None:
    """No classifier: the train-mode checks run on the loss sum over the features of mean(f ** 2)
    (labels unused), the same in both backends, so gradients reach every layer before a feature."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    from resnet_spec import parity
    from resnet_spec.parity.engine import BACKBONE

    arch = resnet_spec.build_architecture(resnet20_backbone(["stage1", "stage2.block0.conv1", "stage3"]))
    report = parity.run(arch, seed=0, steps=1, batch_size=2, precision="float64")
    assert report.ok, parity.render_text(report)
    assert report.checks() == ["eval", "train_forward", "norm_stats", "gradients", "weights_after"]
    assert BACKBONE in report.notes and report.skipped == {} and report.steps == 1
    rows = {d.node: d for d in report.rows("eval")}
    assert set(rows) == {node.name for node in arch.graph}
    marked = {d.tensor: d.node for d in report.differences if d.tensor.startswith("output ")}
    assert marked == {f"output {name}": node for name, node in arch.graph.outputs.items()}
    assert all(rows[node].magnitude > 0 for node in arch.graph.outputs.values())  # they compared something
    gradients = {d.node for d in report.rows("gradients") if d.magnitude > 0}
    assert {"stem.conv1", "stage1.block0.conv1", "stage3.block2.conv2"} <= gradients
    keras_losses, torch_losses = report.losses.values()
    assert len(keras_losses) == 1 and keras_losses[0] > 0
    np.testing.assert_allclose(keras_losses, torch_losses, rtol=1e-12)


@pytest.mark.keras
@pytest.mark.torch
def test_a_lean_backbone_parity_names_the_checks_it_did_not_run() -> None:
    """A lean run's segmented backward does not carry a backbone's loss: the eval check runs, and
    the report names each train-mode check as not run, with the reason, in every form."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    from resnet_spec import parity
    from resnet_spec.parity.engine import BACKBONE_LEAN
    from resnet_spec.parity.junit import junit_xml

    arch = resnet_spec.build_architecture(resnet20_backbone())
    report = parity.run(arch, seed=0, steps=2, batch_size=2, precision="float64", low_memory=True, isolate=False)
    assert report.ok and report.checks() == ["eval"] and BACKBONE_LEAN in report.notes
    assert set(report.skipped) == {"train_forward", "norm_stats", "gradients", "weights_after"}
    assert report.steps == 0 and report.settings["steps_asked"] == 2
    text = parity.render_text(report)
    assert "gradients       not run: a lean run's segmented backward does not carry a backbone's loss" in text
    assert "0 SGD steps" in text and report.to_json()["skipped"] == report.skipped
    xml = junit_xml([("backbone", report)])
    assert xml.count("<skipped") == 4 and 'tests="5"' in xml
