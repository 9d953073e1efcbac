"""resnet_spec.testing.assert_parity: a spec in any form, in-memory models, two saved files; an
AssertionError whose message is the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import resnet_spec
from resnet_spec import graph as g
from resnet_spec.backends import get_backend
from resnet_spec.parity import sides, transfer
from resnet_spec.testing import assert_parity

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytestmark = [pytest.mark.keras, pytest.mark.torch]

TINY = Path(__file__).resolve().parent / "parity_specs" / "tiny.yaml"


def test_a_spec_in_every_form_passes_and_returns_the_report() -> None:
    report = assert_parity(TINY, steps=1)
    assert report.ok and report.spec == str(TINY)
    data = resnet_spec.load(TINY).data
    assert data is not None
    assert assert_parity(dict(data), steps=0).ok
    assert assert_parity(TINY, overrides=["input.height=16", "input.width=16"], steps=0).batch_size == 2


def test_a_mapping_mistake_raises_with_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sides.get_backend

    class SymmetricPadding:
        """torch pads the stride-2 conv (1, 1) instead of TensorFlow's (0, 1)."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def build(self, arch: resnet_spec.Architecture, **options: object) -> object:
            nodes = [dataclasses.replace(n, padding=(1, 1, 1, 1)) if isinstance(n, g.Conv2D) and n.padding == (0, 1, 0, 1)
                     else n for n in arch.graph]  # fmt: skip
            return self.inner.build(dataclasses.replace(arch, graph=g.Graph(nodes, arch.graph.output)), **options)  # type: ignore[attr-defined]

    monkeypatch.setattr(
        sides, "get_backend", lambda name: SymmetricPadding(real(name)) if name == "torch" else real(name)
    )
    spec = {**(resnet_spec.load(TINY).data or {}), "defaults": {"padding": "same"}}
    with pytest.raises(AssertionError) as failure:
        assert_parity(spec, steps=1)
    message = str(failure.value)
    assert message.startswith("tiny: the backends do not compute the same function")
    assert "first diverging layer: stage2.block0.conv1 (eval, output" in message and "limit 0.0001" in message
    assert "eval " in message and "FAIL" in message


def test_saved_models_with_their_own_weights(tmp_path: Path) -> None:
    """Two files compiled separately hold different weights (each framework drew its own): not
    the same function. After moving the Keras weights into the PyTorch model they are."""
    arch = resnet_spec.build_architecture(TINY)
    data = resnet_spec.load(TINY).data
    keras_backend, torch_backend = get_backend("keras"), get_backend("torch")
    keras_model, torch_model = keras_backend.build(arch), torch_backend.build(arch)
    keras_backend.save(keras_model, arch, data, tmp_path / "tiny.keras")  # type: ignore[arg-type]
    torch_backend.save(torch_model, arch, data, tmp_path / "tiny.pt")  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="first diverging layer: stem.conv1"):
        assert_parity([tmp_path / "tiny.keras", tmp_path / "tiny.pt"], steps=1)
    transfer(keras_model, "keras", torch_model, "torch", arch)
    torch_backend.save(torch_model, arch, data, tmp_path / "converted.pt")  # type: ignore[arg-type]
    report = assert_parity([str(tmp_path / "tiny.keras"), str(tmp_path / "converted.pt")], steps=1)
    assert report.ok and report.backends == ("keras", "torch")


def test_models_are_not_changed_by_the_check() -> None:
    arch = resnet_spec.build_architecture(TINY)
    keras_backend, torch_backend = get_backend("keras"), get_backend("torch")
    keras_model, torch_model = keras_backend.build(arch), torch_backend.build(arch)
    transfer(keras_model, "keras", torch_model, "torch", arch)
    weights: Any = torch_backend
    before = weights.get_weights(torch_model, arch)
    assert assert_parity(arch, models={"keras": keras_model, "torch": torch_model}, steps=2).ok
    after = weights.get_weights(torch_model, arch)
    assert all((before[n][k] == after[n][k]).all() for n in before for k in before[n])


def test_wrong_subjects_are_refused() -> None:
    with pytest.raises(resnet_spec.SpecError):
        assert_parity({"version": 1})
    with pytest.raises(FileNotFoundError):
        assert_parity(["missing.keras", "missing.pt"])
