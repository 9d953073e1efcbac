"""`resnet-spec import-weights SPEC FILE -o OUT`: the written model file loads back (hash checked
by the backend) and computes what the source network computes; usage and mismatch errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch
from import_helpers import TINY, random_weights, tiny, torchvision_state_dict

from resnet_spec.backends import get_backend
from resnet_spec.cli import main

pytestmark = pytest.mark.torch
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_torchvision_weights_become_a_resnet_spec_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    torchvision = pytest.importorskip("torchvision")  # the test-references extra
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.get_buffer("running_mean").uniform_(-0.2, 0.2)
                module.get_buffer("running_var").uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    out = tmp_path / "resnet18.pt"
    argv = ["import-weights", str(EXAMPLES / "resnet18.yaml"), str(tmp_path / "resnet18.pth"), "-o", str(out),
            "--set", "input.height=64", "--set", "input.width=64", "--list"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "stage2.block0.shortcut.conv  <- layer2.0.downsample.0" in printed
    assert "imported 102 tensors into 41 layers from" in printed and f"wrote {out} (torch, resnet18, sha256:" in printed
    model, meta = get_backend("torch").load(out)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model.eval()(images).numpy(), reference(images).numpy()
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    assert meta["spec"]["input"]["height"] == 64

    before = out.read_bytes()
    assert main(argv) == 2  # never overwrites what it did not create
    assert "exists; choose another -o or pass --force" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*argv, "--force"]) == 0


def test_other_classes_a_new_classifier_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in torchvision_state_dict(random_weights(tiny())).items()
    }
    torch.save(state, tmp_path / "w.pth")
    out = tmp_path / "six.pt"
    assert main(["import-weights", str(spec), str(tmp_path / "w.pth"), "-o", str(out), "--set", "classes=6"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "head.classifier.kernel: expected shape (32, 6) (neutral layout)" in err
    assert not out.exists()
    argv = ["import-weights", str(spec), str(tmp_path / "w.pth"), "-o", str(out), "--set", "classes=6",
            "--classifier", "auto", "--format", "json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new"] == ["head.classifier"] and report["unused"] == ["fc.weight", "fc.bias"]
    assert report["matched"]["stem.conv1"] == {"kernel": "conv1.weight"} and report["output"] == str(out)


@pytest.mark.keras
def test_a_pytorch_state_dict_into_a_keras_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorflow")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    weights = random_weights(tiny())
    torch.save(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in torchvision_state_dict(weights).items()},
        tmp_path / "w.pth",
    )
    assert main(["import-weights", str(spec), str(tmp_path / "w.pth"), "-o", str(tmp_path / "tiny.keras")]) == 0
    capsys.readouterr()
    keras_backend: Any = get_backend("keras")
    model, _ = keras_backend.load(tmp_path / "tiny.keras")
    loaded = keras_backend.get_weights(model, tiny())
    for node, entry in weights.items():
        for key, value in entry.items():
            np.testing.assert_array_equal(loaded[node][key], value)
