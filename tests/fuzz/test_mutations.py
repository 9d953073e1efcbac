"""Part 2 of the fuzzing issue: mutated specs.

Random edits of valid specs (generated ones and the shipped examples): removed, misspelt and
unknown keys, wrong types, extreme numbers, strides that break a residual add, channel counts
that break a zero-pad shortcut, paddings that shrink a branch, unknown block kinds, swapped
layer types, dropped and duplicated list items. Whatever the edit, ``validate`` returns either a
valid architecture or diagnostics with a catalogued code, a message and a location (a line when
it was given text): it never raises, and a spec it accepts builds in a backend without a
framework error. The same holds for edits of the YAML *text* (bit flips, truncation, indentation,
spliced or inserted syntax)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, note, settings
from hypothesis import strategies as st

import resnet_spec
from resnet_spec.loader import dump_yaml

from . import helpers
from .conftest import examples
from .strategies import is_open, mutated, mutated_text, valid_specs

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
EXAMPLE_DATA = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in EXAMPLES]
EXAMPLE_TEXT = [p.read_bytes() for p in EXAMPLES]

seed_specs = st.one_of(valid_specs(), st.sampled_from(EXAMPLE_DATA))


def _small(arch: Any) -> bool:
    """Cheap enough to build and run in a property test."""
    return arch.params_trainable < 3_000_000 and arch.macs < 300_000_000 and len(arch.graph) < 1500


def _validate_both_ways(doc: dict[str, Any]) -> resnet_spec.Result:
    result = resnet_spec.validate(doc)  # must not raise
    for d in result.diagnostics:
        helpers.check_diagnostic(d, from_text=False)
    assert result.ok == (result.architecture is not None and not result.report.errors)
    try:
        text = dump_yaml(doc)  # quotes '1e5' (yaml.safe_dump would not: regression run_dir_exponent_name)
    except (yaml.YAMLError, ValueError):  # ValueError: an integer too long for str()
        return result
    again = resnet_spec.validate(text.encode("utf-8"), filename="mutated.yaml")
    for d in again.diagnostics:
        helpers.check_diagnostic(d, from_text=True)
    # The text says what the mapping says.
    assert again.ok == result.ok, (result.report.errors, again.report.errors)
    if result.ok:
        assert again.architecture.hash == result.architecture.hash
    return result


def _bottleneck_first_block(spec: Any) -> bool:
    return any("bottleneck" in (s.first_block or "") and "bottleneck" not in s.block for s in spec.stages)


@settings(max_examples=examples("mutation"))
@given(st.data())
def test_mutated_specs_give_diagnostics_not_exceptions(data: st.DataObject) -> None:
    spec = data.draw(seed_specs, label="seed")
    doc, log = data.draw(mutated(spec), label="mutated")
    note(f"edits: {log}")
    result = _validate_both_ways(doc)
    if result.ok:
        arch = result.architecture
        assert arch is not None and arch.params_trainable >= 0 and (arch.spec.classes is None or arch.output_shape == (arch.spec.classes,))
        if not (is_open("budget_first_block_bottleneck") and _bottleneck_first_block(arch.spec)):
            helpers.check_budget(arch)


@pytest.mark.torch
@settings(max_examples=examples("mutation_build"))
@given(st.data())
def test_mutated_specs_that_validate_also_build(data: st.DataObject) -> None:
    """A spec the validator accepts never meets a framework error (PyTorch; the Keras build of
    the same kind of specs is covered by test_generated_valid)."""
    pytest.importorskip("torch")
    spec = data.draw(valid_specs(), label="seed")
    doc, log = data.draw(mutated(spec, max_edits=2), label="mutated")
    note(f"edits: {log}")
    result = resnet_spec.validate(doc)
    if result.ok and _small(result.architecture):
        helpers.check_backend("torch", result.architecture)


def _text_seeds() -> st.SearchStrategy[tuple[bytes, str]]:
    yaml_text = st.sampled_from(EXAMPLE_TEXT).map(lambda t: (t, "spec.yaml"))
    generated = valid_specs(max_stages=3).map(lambda s: (yaml.safe_dump(s, sort_keys=False).encode(), "spec.yaml"))
    as_json = valid_specs(max_stages=3).map(lambda s: (json.dumps(s, indent=1).encode(), "spec.json"))
    return st.one_of(yaml_text, generated, as_json)


@settings(max_examples=examples("text"))
@given(st.data())
def test_mutated_text_gives_diagnostics_not_exceptions(data: st.DataObject) -> None:
    text, name = data.draw(_text_seeds(), label="seed")
    broken = data.draw(mutated_text(text), label="mutated text")
    result = resnet_spec.validate(broken, filename=name)  # bytes are always document text
    for d in result.diagnostics:
        helpers.check_diagnostic(d, from_text=True)
    if result.ok:
        assert result.architecture is not None
