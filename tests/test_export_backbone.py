"""A backbone (``head.features``) leaves the tool: ONNX with one named output per feature
(dynamic batch, each checked with onnxruntime against the torch forward), a ``.pt2`` program
with the same outputs, and ``parity A B`` comparing every output of two saved backbones
(``.pt`` vs ``.keras``, ``.pt`` vs ``.onnx``), one row per output. The network: ResNet-20's
CIFAR stem and one basic block per stage, features c3..c5 on the three stages (seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from resnet_spec.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("tensorflow") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None
needs_onnx = pytest.mark.skipif(not (HAVE_TORCH and HAVE_ORT), reason="needs torch, onnxruntime and onnxscript")
FEATURES = {"c3": "stage1", "c4": "stage2", "c5": "stage3"}
SHAPES = {"c3": (16, 32, 32), "c4": (32, 16, 16), "c5": (64, 8, 8)}  # NCHW, as the ONNX file gives them


def backbone_spec(features: dict[str, str] | None = None) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / "resnet20_cifar10.yaml").read_text())
    for key in ("classes", "head", "training", "depth"):
        data.pop(key, None)
    data["name"] = "resnet8_backbone"
    data["stages"] = [dict(stage, blocks=1) for stage in data["stages"]]
    data["head"] = {"features": features or FEATURES}
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_TORCH:
        pytest.skip("needs torch")
    folder = tmp_path_factory.mktemp("backbone")
    (folder / "bb.yaml").write_text(yaml.safe_dump(backbone_spec()))
    assert main(["compile", str(folder / "bb.yaml"), "--backend", "torch", "-o", str(folder / "bb.pt")]) == 0
    return folder


def _torch_outputs(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    import torch
    from resnet_spec_torch.io import load

    model = load(path)[0].eval()
    with torch.no_grad():
        out = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    return {name: value.numpy() for name, value in out.items()}


def _parity(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["parity", *map(str, args), "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def _output_rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["tensor"][len("output "):]: d for d in report["differences"] if d["tensor"].startswith("output ")}


@pytest.mark.torch
@needs_onnx
def test_backbone_onnx_has_one_named_output_per_feature_within_1e5(files: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import onnx
    import onnxruntime

    out = files / "bb.onnx"
    assert main(["export", str(files / "bb.pt"), "-o", str(out), "--force"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "3 outputs: c3, c4, c5" in printed[0]
    assert [line.split(":")[0] for line in printed[1:]] == [
        f"onnxruntime vs torch on a batch of 3, output {name}" for name in FEATURES]  # fmt: skip
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(FEATURES)
    assert all(o.shape[0] == "batch" for o in session.get_outputs()) and session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 3):
        images = np.random.default_rng(batch).standard_normal((batch, 32, 32, 3)).astype(np.float32)
        expected = _torch_outputs(files / "bb.pt", images)
        got = dict(zip(list(FEATURES), session.run(None, {"images": images.transpose(0, 3, 1, 2).copy()})))
        for name in FEATURES:
            assert got[name].shape == (batch, *SHAPES[name])
            rel = float(np.max(np.abs(got[name] - expected[name])) / np.max(np.abs(expected[name])))
            assert rel <= 1e-5, (name, batch, rel)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["resnet_spec.outputs"]) == {n: f"{s}.block0.out_act" for n, s in FEATURES.items()}


@pytest.mark.torch
def test_backbone_pt2_program_returns_every_feature(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    out = files / "bb.pt2"
    assert main(["export", str(files / "bb.pt"), "-o", str(out), "--force"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [f"torch.export.load vs the network on a batch of 3, output {n}: max abs 0, max rel 0"
                         for n in FEATURES]  # fmt: skip
    images = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        got = torch.export.load(str(out)).module()(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    expected = _torch_outputs(files / "bb.pt", images)
    assert list(got) == list(FEATURES) and all(np.array_equal(got[n].numpy(), expected[n]) for n in FEATURES)


@pytest.mark.torch
@needs_onnx
def test_parity_of_a_backbone_pt_and_its_onnx_compares_each_output(files: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    if not (files / "bb.onnx").exists():
        assert main(["export", str(files / "bb.pt"), "-o", str(files / "bb.onnx")]) == 0
    capsys.readouterr()
    code, report = _parity(capsys, files / "bb.pt", files / "bb.onnx")
    assert code == 0 and report["ok"] and report["precision"] == "float32"
    rows = _output_rows(report)
    assert list(rows) == list(FEATURES) and len(report["differences"]) == 3
    assert all(0.0 < r["max_rel"] <= 1e-5 and r["node"] == f"{FEATURES[n]}.block0.out_act" for n, r in rows.items())
    assert main(["parity", str(files / "bb.onnx"), str(files / "bb.pt")]) == 0  # either order
    text = capsys.readouterr().out
    assert all(f"  output {name}" in text for name in FEATURES)


@pytest.mark.torch
def test_parity_of_two_backbones_names_the_output_that_differs(files: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import torch

    from resnet_spec.backends import get_backend
    from resnet_spec.pipeline import build_architecture

    backend = get_backend("torch")
    model, meta = backend.load(files / "bb.pt")
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("stage3.")).add_(0.5)  # only c5 changes
    arch = build_architecture(meta["spec"])
    backend.save(model, arch, meta["spec"], tmp_path / "other.pt")
    capsys.readouterr()
    code, report = _parity(capsys, files / "bb.pt", tmp_path / "other.pt")
    assert code == 1 and not report["ok"]
    rows = _output_rows(report)
    assert rows["c3"]["ok"] and rows["c4"]["ok"] and not rows["c5"]["ok"]
    assert report["first_divergence"]["node"].startswith("stage3.")
    # another set of features: refused in one line (exit 2), before any work
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(backbone_spec({"c4": "stage2", "c5": "stage3"})))
    assert main(["compile", str(tmp_path / "two.yaml"), "--backend", "torch", "-o", str(tmp_path / "two.pt")]) == 0
    capsys.readouterr()
    assert main(["parity", str(files / "bb.pt"), str(tmp_path / "two.pt")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "gives the outputs c3 32x32x16, c4 16x16x32, c5 8x8x64" in line and "same feature names and shapes" in line


@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.skipif(not (HAVE_TORCH and HAVE_KERAS), reason="needs torch and Keras")
def test_parity_of_a_backbone_pt_and_keras_compares_every_node_and_output(files: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from resnet_spec.pipeline import build_architecture

    keras_file = files / "bb.keras"
    assert main(["convert", str(files / "bb.pt"), "--to", "keras", "-o", str(keras_file), "--force"]) == 0
    capsys.readouterr()
    code, report = _parity(capsys, files / "bb.pt", keras_file)
    assert code == 0 and report["ok"] and report["precision"] == "float64"
    arch = build_architecture(files / "bb.yaml")
    assert {d["node"] for d in report["differences"]} == {n.name for n in arch.graph}
    rows = _output_rows(report)
    assert list(rows) == list(FEATURES) and all(r["magnitude"] > 0 and r["max_rel"] < 1e-12 for r in rows.values())
