"""The committed JSON Schema is generated from the models, and agrees with the validator."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from resnet_spec import schema
from resnet_spec.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", schema.committed_paths(REPO), ids=lambda p: str(p.relative_to(REPO)))
def test_committed_schema_has_not_drifted(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == schema.render(), (
        f"{path} is stale: run `resnet-spec schema --write .` and commit the result"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    generated = schema.generate()
    assert generated["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(generated)


def test_cli_prints_the_packaged_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema.generate()


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate_against_the_json_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), schema.generate())


STRUCTURAL = sorted(
    p for p in (REPO / "tests" / "malformed").glob("*.yaml")
    if p.read_text().startswith(("# expect: RS101", "# expect: RS103", "# expect: RS104", "# expect: RS105", "# expect: RS106"))
)  # fmt: skip


@pytest.mark.parametrize("path", STRUCTURAL, ids=lambda p: p.stem)
def test_json_schema_rejects_what_the_schema_check_rejects(path: Path) -> None:
    """Editors using the schema flag the same structural mistakes as `resnet-spec validate`."""
    errors = list(jsonschema.Draft202012Validator(schema.generate()).iter_errors(yaml.safe_load(path.read_text())))
    assert errors


# Options of another block or shortcut kind (RS111) that the schema itself excludes: each kind's
# model has exactly its own fields. (The RS111 that need the whole spec, such as a custom block
# without a pre-activation, are the validator's alone.)
KIND_OPTIONS = ["groups_on_basic", "dropout_on_bottleneck", "zero_init_on_preact", "source_on_basic", "norm_on_zero_pad_shortcut"]


@pytest.mark.parametrize("name", KIND_OPTIONS)
def test_json_schema_rejects_options_of_other_kinds(name: str) -> None:
    path = REPO / "tests" / "malformed" / f"{name}.yaml"
    assert path.read_text().startswith("# expect: RS111")
    assert list(jsonschema.Draft202012Validator(schema.generate()).iter_errors(yaml.safe_load(path.read_text())))
