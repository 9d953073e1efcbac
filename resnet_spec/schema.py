"""The JSON Schema (draft 2020-12) of the spec language, generated from :mod:`resnet_spec.spec`.

Two generated copies are committed: ``spec/resnet-spec.schema.json`` (what editors point at
through the ``# yaml-language-server: $schema=`` modeline of every example) and the package
data ``resnet_spec/schema/resnet-spec.schema.json`` (what ``resnet-spec schema`` prints from an
installed wheel). ``resnet-spec schema --write`` regenerates both; a test fails when either drifts.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_FILE = "resnet-spec.schema.json"
SCHEMA_ID = "https://resnet-spec.dev/schema/v1/resnet-spec.schema.json"


def generate() -> dict[str, Any]:
    from .spec import ResNetSpec

    body = ResNetSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **body}


def render(schema: dict[str, Any] | None = None) -> str:
    return json.dumps(schema or generate(), indent=2, sort_keys=False) + "\n"


def packaged_text() -> str:
    return resources.files("resnet_spec").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")


def committed_paths(repo_root: Path) -> list[Path]:
    return [repo_root / "spec" / SCHEMA_FILE, repo_root / "resnet_spec" / "schema" / SCHEMA_FILE]


def write(repo_root: Path) -> list[Path]:
    text = render()
    paths = committed_paths(repo_root)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return paths
