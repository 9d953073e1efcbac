"""Checks shared by the fuzz properties and the regression replay."""

from __future__ import annotations

import gc
import json
import math
from typing import Any

import numpy as np

import resnet_spec
from resnet_spec.diagnostics import CODES, Diagnostic, Severity
from resnet_spec.loader import dump_yaml
from resnet_spec.pipeline import Architecture

from . import oracle

_BACKENDS: dict[str, Any] = {}
_KERAS_BUILDS = 0


def backend(name: str) -> Any:
    if name not in _BACKENDS:
        from resnet_spec.backends import get_backend

        _BACKENDS[name] = get_backend(name)
    return _BACKENDS[name]


def check_diagnostic(d: Diagnostic, *, from_text: bool) -> None:
    """Every diagnostic is a catalogued code, a message and a location."""
    assert d.code in CODES, d
    assert isinstance(d.message, str) and d.message.strip(), d
    assert isinstance(d.severity, Severity), d
    assert isinstance(d.key_path, tuple) and all(isinstance(p, (str, int)) for p in d.key_path), d
    if from_text:
        assert d.line is not None and d.line >= 1, f"no line for {d}"
        assert d.column is None or d.column >= 1, d
    d.to_dict()  # serializable for --format json
    json.dumps(d.to_dict())


def validate_ok(spec: dict[str, Any]) -> Architecture:
    result = resnet_spec.validate(spec)
    errors = [f"{d.code} {d.key}: {d.message}" for d in result.report.errors]
    assert result.ok, "the validator refused a valid spec:\n" + "\n".join(errors) + f"\n{json.dumps(spec)}"
    for d in result.diagnostics:
        check_diagnostic(d, from_text=False)
    assert result.architecture is not None
    return result.architecture


def check_budget(arch: Architecture) -> None:
    """An accepted spec stays within the size budget, counted exactly (not estimated)."""
    from resnet_spec import budget

    assert arch.params_trainable + arch.params_non_trainable <= budget.MAX_PARAMS, (
        "accepted beyond the parameter budget"
    )
    assert len(arch.graph) <= budget.MAX_NODES, "accepted beyond the node budget"


def check_against_oracle(spec: dict[str, Any], arch: Architecture) -> None:
    """The graph's shapes agree with the independent oracle, stage by stage."""
    prediction = oracle.predict(spec)
    assert arch.output_shape == prediction.output, (arch.output_shape, prediction.output)
    last_of_stage: dict[int, str] = {}
    head_input = None
    for node in arch.graph:
        if node.name.startswith("stage"):
            last_of_stage[int(node.name[5:].split(".")[0])] = node.name
        elif node.name.startswith("head.") and head_input is None:
            head_input = node.inputs[0]
    for index, expected in enumerate(prediction.stages, start=1):
        assert arch.shape_of(last_of_stage[index]) == expected, (index, last_of_stage[index], expected)
    assert head_input is not None and arch.shape_of(head_input) == prediction.body
    assert arch.params_trainable > 0 and arch.params_non_trainable >= 0
    # The same spec as YAML text validates to the same architecture. The text comes from the
    # loader's own dumper: yaml.safe_dump writes strings such as '1e5' bare, which the loader
    # reads as numbers (regression run_dir_exponent_name).
    again = resnet_spec.validate(dump_yaml(spec))
    assert again.ok and again.architecture is not None and again.architecture.hash == arch.hash


def check_backend(name: str, arch: Architecture, *, seed: int = 0) -> None:
    """The backend builds the architecture, counts its parameters as the graph does, and one
    forward pass gives every node the predicted shape, with finite values."""
    global _KERAS_BUILDS
    b = backend(name)
    if name == "keras":
        _KERAS_BUILDS += 1
        if _KERAS_BUILDS % 50 == 0:  # clearing on every build makes each build 4x slower
            import keras

            keras.backend.clear_session()
            gc.collect()
    model = b.build(arch)
    assert b.count_params(model) == (arch.params_trainable, arch.params_non_trainable), name
    h, w, c = arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels
    images = np.random.default_rng(seed).standard_normal((2, h, w, c)).astype("float32")
    outputs = b.node_outputs(model, arch, images)
    assert set(outputs) == {node.name for node in arch.graph}, name
    for node in arch.graph:
        value = outputs[node.name]
        assert value.shape == (2, *arch.shape_of(node.name)), (name, node.name, value.shape, arch.shape_of(node.name))
        assert np.isfinite(value).all(), (name, node.name)
    del model, outputs


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
