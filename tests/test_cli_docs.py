"""The documentation of the command line and the language says what the code does: the
Training section of docs/spec-language.md lists every key of the pydantic models with its
default."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from resnet_spec import spec
from resnet_spec.loader import load_text

REPO = Path(__file__).resolve().parent.parent
REQUIRED = "—"


def _model_of(annotation: Any) -> list[type[BaseModel]]:
    """The models inside an annotation such as ``Warmup | None`` or a discriminated union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _model_of(arg)]


def _keys(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> default (REQUIRED when there is none) for every leaf key under ``model``."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        inner = _model_of(field.annotation)
        if inner:
            for sub in inner:
                for key, default in _keys(sub, f"{prefix}{name}.").items():
                    found.setdefault(key, default)
            if isinstance(field.default, BaseModel):  # the group's own default (schedule: constant)
                for key, value in field.default.model_dump().items():
                    found[f"{prefix}{name}.{key}"] = value
        else:
            found[prefix + name] = REQUIRED if field.is_required() or field.default is None else field.default
    return found


def _documented() -> dict[str, str]:
    text = (REPO / "docs" / "spec-language.md").read_text()
    section = text[text.index("## Training"):]
    section = section[: section.find("\n## ", 5) if "\n## " in section[5:] else None]
    rows = re.findall(r"^\| `([a-z_.0-9]+)` \| [^|]+ \| ([^|]+) \|", section, re.MULTILINE)
    assert rows, "the Training section has no table of keys"
    return {key: default.strip() for key, default in rows}


def test_training_section_names_every_key() -> None:
    documented, actual = _documented(), _keys(spec.Training)
    assert sorted(documented) == sorted(actual)


@pytest.mark.parametrize("key", sorted(_keys(spec.Training)))
def test_training_section_gives_each_default(key: str) -> None:
    default, shown = _keys(spec.Training)[key], _documented()[key]
    if default is REQUIRED:
        assert shown == REQUIRED
        return
    match = re.fullmatch(r"`([^`]+)`", shown)
    assert match, f"{key}: default {shown!r} is not one `value`"
    value = load_text(f"v: {match.group(1)}").data["v"]
    assert value == pytest.approx(default) if isinstance(default, float) else value == default
