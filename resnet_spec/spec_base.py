"""The base of the spec language's pydantic models: strict models, number types, and the field
descriptions of the JSON Schema.

Every model forbids unknown keys and range-checks every number, so the generated JSON Schema
is as strict as the validator. Field docs are the attribute docstrings (the string literal under
each field), read when a schema is generated.
"""

from __future__ import annotations

import ast
import inspect
import sys
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_VERSION = 1

PositiveInt = Annotated[int, Field(ge=1)]
# No fixed upper bound: the size budget (RS207) refuses absurd widths and depths with an
# estimate of the parameters and memory they would need, which says more than "out of range".
Channels = Annotated[int, Field(ge=1)]
KernelSize = Annotated[int, Field(ge=1, le=64)]
StrideValue = Annotated[int, Field(ge=1, le=16)]
PadValue = Annotated[int, Field(ge=0, le=1024)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]

ActivationName = Literal["relu", "relu6", "silu", "gelu", "sigmoid", "tanh"]

PaddingMode = Literal["same", "valid", "symmetric"]
Padding = PaddingMode | PadValue | Annotated[list[PadValue], Field(min_length=4, max_length=4)]
PADDING_DOC = (
    "'same': TensorFlow's rule (output = ceil(input / stride), the odd extra row/column at the "
    "bottom/right); 'valid': no padding; 'symmetric': k // 2 on every side (PyTorch style); an "
    "integer: that many on every side; [top, bottom, left, right]: explicit."
)


def _describe_fields(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Give each property of ``cls``'s JSON Schema its attribute docstring (the string literal
    under the field), unless the field has an explicit ``description``.

    pydantic's ``use_attribute_docstrings`` does the same at import, re-reading and re-parsing
    this file once per class: about a third of the CLI's start-up, for text that only the JSON
    Schema shows. Here the file is parsed once, and only when a schema is generated."""
    for name, prop in schema.get("properties", {}).items():
        doc = _field_docstring(cls, name)
        if doc is not None and cls.model_fields[name].description is None:
            prop["description"] = doc


def _field_docstring(cls: type, field: str) -> str | None:
    # The class that declares the field owns its docstring (as pydantic's inherited FieldInfo).
    owner = next(c for c in cls.__mro__ if field in inspect.get_annotations(c))
    return _attribute_docstrings(owner.__module__).get(owner.__qualname__, {}).get(field)


@cache
def _attribute_docstrings(module: str) -> dict[str, dict[str, str]]:
    """{class name: {field: docstring}} for the top-level classes of ``module``."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module]))
    except (OSError, TypeError):  # no source (a zipped or compiled-only install): no docstrings
        return {}
    found: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            found[node.name] = {
                stmt.target.id: inspect.cleandoc(after.value.value)
                for stmt, after in zip(node.body, node.body[1:])
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
            }  # fmt: skip
    return found


class SpecModel(BaseModel):
    # Field docs come from the attribute docstrings, added when a schema is generated (see
    # _describe_fields) rather than by use_attribute_docstrings at import.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_describe_fields)

