"""Part 1 of the fuzzing issue: generated valid specs.

For each generated spec: the validator accepts it, the graph's shapes agree with an independent
oracle, both backends build it with the parameter counts the graph predicts, and a forward pass
gives every node its predicted shape (with finite values). PyTorch, being fast, also runs on its
own stream of examples. Profiles and budgets: tests/fuzz/conftest.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from . import helpers
from .conftest import examples
from .strategies import valid_specs


@settings(max_examples=examples("validate"))
@given(valid_specs(training=True))
def test_validator_accepts_generated_specs(spec: dict) -> None:
    arch = helpers.validate_ok(spec)
    helpers.check_against_oracle(spec, arch)


@pytest.mark.torch
@settings(max_examples=examples("torch"))
@given(valid_specs())
def test_torch_builds_generated_specs(spec: dict) -> None:
    pytest.importorskip("torch")
    arch = helpers.validate_ok(spec)
    helpers.check_backend("torch", arch)


@pytest.mark.keras
@pytest.mark.torch
@settings(max_examples=examples("keras"))
@given(valid_specs())
def test_keras_and_torch_build_generated_specs(spec: dict) -> None:
    """Both backends on the same spec (Keras is the slow one: ~0.3 s per small model)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    arch = helpers.validate_ok(spec)
    helpers.check_backend("keras", arch)
    helpers.check_backend("torch", arch)
