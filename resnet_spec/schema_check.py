"""Schema check: plain data -> typed :class:`~resnet_spec.spec.ResNetSpec`, or diagnostics.

The JSON Schema in ``spec/`` is generated from the same pydantic models, so checking against
the models *is* the schema check; what this module adds is the translation of pydantic's errors
into diagnostics users can act on: stable codes, the key path in the user's document (pydantic's
internal union labels stripped), one message per place, and "did you mean" for misspelt keys
and enum values. Validation is strict: YAML already types its scalars, so "3" is not a number.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, cast

from pydantic import ValidationError

from .blocks import applicability
from .diagnostics import Diagnostic, KeyPath, digit_count, show_int
from .spec import ResNetSpec

_TYPE_ERRORS = {
    "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "bool_type",
    "bool_parsing", "string_type", "dict_type", "list_type", "model_type", "model_attributes_type",
    "tuple_type", "none_required", "is_instance_of",
}  # fmt: skip
_RANGE_ERRORS = {
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
    "string_too_short", "string_too_long",
}  # fmt: skip
_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type", "dataclass_type", "is_instance_of"}
_RANGE_WORDS = {
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
    "too_short": "at least {min_length} items",
    "too_long": "at most {max_length} items",
    "string_too_short": "at least {min_length} characters",
    "string_too_long": "at most {max_length} characters",
}


def check(data: Any) -> tuple[ResNetSpec | None, list[Diagnostic]]:
    huge = _huge_ints(data)
    if huge:  # pydantic-core would turn them into text, which Python refuses (an unraisable ValueError)
        return None, huge
    try:
        return ResNetSpec.model_validate(data, strict=True), []
    except ValidationError as exc:
        # Without the inputs: messages take the value from the document, and a flood of errors
        # (one per unknown key) would otherwise hold a reference and a copy per error.
        errors = exc.errors(include_url=False, include_input=False)
        return None, translate(cast(list[dict[str, Any]], errors), data)


# Diagnostics per document. A hostile file can hold a problem per line (80,000 unknown keys in
# 0.9 MB); listing them all costs seconds and hundreds of MB, and nobody reads past the first few.
MAX_DIAGNOSTICS = 100


def translate(errors: Iterable[dict[str, Any]], data: Any) -> list[Diagnostic]:
    """One diagnostic per document place: union members failing at the same place are merged.
    Past :data:`MAX_DIAGNOSTICS` places, one RS110 says how many more there are."""
    by_path: dict[KeyPath, list[dict[str, Any]]] = {}
    for error in errors:
        by_path.setdefault(data_path(error["loc"], data), []).append(error)
    places = list(by_path.items())
    hints = _KeyHints(data)
    found = [_diagnose(path, errs, data, hints) for path, errs in places[:MAX_DIAGNOSTICS]]
    found = list(dict.fromkeys(_drop_missing_explained_by_typo(found)))  # one RS108 for a stage's keys
    if len(places) > MAX_DIAGNOSTICS:
        found.append(_more_problems(places[MAX_DIAGNOSTICS][0], len(places) - MAX_DIAGNOSTICS))
    return found


def _more_problems(first: KeyPath, count: int) -> Diagnostic:
    """Stands for the places not listed; it points at the first of them."""
    return Diagnostic(
        "RS110", f"and {show_int(count)} more problems (only the first {MAX_DIAGNOSTICS} are listed)",
        hint="fix these and validate again", key_path=first,
    )  # fmt: skip


def _huge_ints(data: Any) -> list[Diagnostic]:
    """Integers past Python's 4,300-digit text limit. YAML files cannot hold them (the loader
    refuses them), but a mapping can (a saved model's stored spec). Shared containers are walked
    once, so the walk is linear in the number of distinct objects."""
    found: list[Diagnostic] = []
    seen: set[int] = set()
    stack: list[tuple[KeyPath, Any]] = [((), data)]
    while stack and len(found) < MAX_DIAGNOSTICS:
        path, node = stack.pop()
        if isinstance(node, int) and node.bit_length() > 14_000 and digit_count(node) > 4_300:
            where = ".".join(map(str, path)) or "the top level"
            found.append(Diagnostic("RS105", f"{where} is {_show(node)}; no number in a spec has more than 4,300 digits", key_path=path))
        elif isinstance(node, (dict, list)) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((path + (key,), value) for key, value in items)
    return found


def _drop_missing_explained_by_typo(found: list[Diagnostic]) -> list[Diagnostic]:
    """`filter: 16` gives "unknown key `filter`, did you mean `filters`?"; the "missing key
    `filters`" beside it says the same thing again, so it goes."""
    suggested = {
        (d.key_path[:-1], d.hint.split("`")[1]) for d in found if d.code == "RS101" and d.hint and d.hint.startswith("did you mean")
    }
    return [d for d in found if not (d.code == "RS102" and d.key_path and (d.key_path[:-1], d.key_path[-1]) in suggested)]


def data_path(loc: Iterable[str | int], data: Any) -> KeyPath:
    """Walk pydantic's loc through the document, dropping union labels (``'conv'``, ``'int'``,
    ``'literal[...]'``) that are not keys of the data. A missing key stays as the last element."""
    path: list[str | int] = []
    node = data
    parts = tuple(loc)
    last = len(parts) - 1
    for i, part in enumerate(parts):  # a hot loop (one pass per error), hence inline tests
        if isinstance(node, dict):
            if part in node:
                node = node[part]
                path.append(part)
            elif i == last and isinstance(part, str) and not _is_label(part):
                path.append(part)  # a missing key
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
    return tuple(path)


def _is_label(part: str) -> bool:
    return part.startswith(("literal[", "list[", "function-", "json-or-python")) or part in {
        "int", "float", "str", "bool", "none", "constrained-int", "constrained-float", "Shortcut", "str-enum",
        *_UNION_TAGS,
    }  # fmt: skip


# Tags of the unions told apart by a function (stages by `block`, shortcuts by `kind`): they
# appear in pydantic's locations but are no keys of the document.
_UNION_TAGS = ("basic", "bottleneck", "preact_basic", "preact_bottleneck", "custom", "identity", "zero_pad",
               "projection", "avg_pool_projection")  # fmt: skip


def _diagnose(path: KeyPath, errors: list[dict[str, Any]], data: Any, hints: _KeyHints) -> Diagnostic:
    kinds = {e["type"] for e in errors}
    received = _value_at(data, path)
    where = ".".join(map(str, path)) or "the top level"
    if "extra_forbidden" in kinds:
        # An option of another block or shortcut kind says where it applies (RS111).
        return applicability.explain(path, data) or Diagnostic(
            "RS101", f"unknown key `{path[-1]}`", hint=hints.hint(path[:-1], str(path[-1])), key_path=path
        )
    if "missing" in kinds:
        return Diagnostic("RS102", f"missing required key `{path[-1]}`", hint=_missing_hint(path), key_path=path)
    if path == ("version",):
        return Diagnostic(
            "RS106", f"spec version {_show(received)} is not supported; this release reads version 1",
            hint="write `version: 1`", key_path=path,
        )  # fmt: skip
    if "union_tag_not_found" in kinds:
        tag = errors[0]["ctx"]["discriminator"].strip("'")
        return Diagnostic("RS102", f"this item needs a `{tag}` key", hint=_choices_hint(_tags(errors)), key_path=path)
    if "union_tag_invalid" in kinds:
        ctx = errors[0]["ctx"]
        # The tag's key, unless the value is a bare name (`shortcut: option_a`).
        suffix = ctx["discriminator"] if isinstance(received, dict) else None
        return _unknown_value(path, ctx["tag"], _quoted(ctx["expected_tags"]), key_path_suffix=suffix)
    literals = [e for e in errors if e["type"] in {"literal_error", "enum"}]
    if literals and isinstance(received, str):
        options = [opt for e in literals for opt in _quoted(e["ctx"]["expected"])]
        return _unknown_value(path, received, options)
    if kinds & _RANGE_ERRORS and len(kinds - _TYPE_ERRORS) == len(kinds & _RANGE_ERRORS):
        error = next(e for e in errors if e["type"] in _RANGE_ERRORS)
        bound = _RANGE_WORDS[error["type"]].format(**error.get("ctx", {}))
        return Diagnostic(
            "RS105", f"{where} is {_show(received)}; it must be {bound}", hint=_alternatives(errors), key_path=path
        )
    if "value_error" in kinds or "string_pattern_mismatch" in kinds:
        message = "; ".join(_clean(e["msg"]) for e in errors)
        return Diagnostic("RS107", f"{where}: {message}", key_path=path)
    expected = _expected(errors)
    shown, kind = _show(received), _type_name(received)
    received_text = shown if shown == kind else f"{shown} ({kind})"
    hint = _mapping_hint(path, data, received) if "a mapping" in expected else None
    return Diagnostic("RS103", f"{where} is {received_text}; expected {expected}", hint=hint, key_path=path)


class _KeyHints:
    """"Did you mean" for the unknown keys of one document. The allowed keys of a parent (a walk
    through the JSON Schema) and the difflib search for a key are each done once per document,
    since a document may repeat the same unknown key in many places (every stage, say)."""

    def __init__(self, data: Any):
        self.data = data
        self._allowed: dict[KeyPath, list[str]] = {}
        self._hints: dict[tuple[KeyPath, str], str | None] = {}

    def hint(self, parent: KeyPath, key: str) -> str | None:
        if (parent, key) not in self._hints:
            if parent not in self._allowed:
                self._allowed[parent] = allowed_keys(parent, self.data)
            allowed = self._allowed[parent]
            match = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            self._hints[parent, key] = f"did you mean `{match[0]}`?" if match else (_choices_hint(allowed) if allowed else None)
        return self._hints[parent, key]


def _unknown_value(path: KeyPath, value: str, options: list[str], key_path_suffix: str | None = None) -> Diagnostic:
    if key_path_suffix:  # 'type', or kind() for a union told apart by a function of that name
        path = (*path, key_path_suffix.strip("'").removesuffix("()"))
    match = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
    hint = f"did you mean '{match[0]}'? " if match else ""
    return Diagnostic(
        "RS104", f"unknown value '{value}' for `{path[-1]}`", hint=hint + _choices_hint(options), key_path=path
    )


def _choices_hint(options: Iterable[str]) -> str:
    return "expected one of: " + ", ".join(sorted(set(options)))


def _missing_hint(path: KeyPath) -> str | None:
    examples = {
        "input": "add `input: {height: 32, width: 32, channels: 3}`",
        "classes": "add `classes: 10` (the number of output classes)",
        "stages": "add a list of stages, e.g. `stages: [{block: basic, blocks: 2, filters: 64}]`",
        "version": "add `version: 1` at the top of the file",
        "filters": "every stage needs `filters` (its output channels)",
    }
    return examples.get(str(path[-1]))


def _tags(errors: list[dict[str, Any]]) -> list[str]:
    return _quoted(errors[0]["ctx"].get("expected_tags", ""))


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def _expected(errors: list[dict[str, Any]]) -> str:
    words = []
    for error in errors:
        kind = error["type"]
        if kind in {"literal_error", "enum"}:
            words.append("one of " + error["ctx"]["expected"])
        elif kind in _RANGE_ERRORS:
            words.append(_RANGE_WORDS[kind].format(**error.get("ctx", {})))
        elif kind in _MAPPING_ERRORS:  # pydantic names the model class here: users write mappings
            words.append("a mapping")
        elif kind == "none_required":
            words.append("null")
        else:
            words.append(_clean(error["msg"]).removeprefix("Input should be ").removesuffix(" instance"))
    return " or ".join(dict.fromkeys(words))


def _alternatives(errors: list[dict[str, Any]]) -> str | None:
    others = [e for e in errors if e["type"] not in _RANGE_ERRORS]
    return f"it may also be {_expected(others)}" if others else None


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def _value_at(data: Any, path: KeyPath) -> Any:
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _show(value: Any) -> str:
    if value is None or isinstance(value, bool):  # as YAML and JSON write them
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str) and len(value) > 60:
        return f"a string of {len(value):,} characters"
    if isinstance(value, int) and not isinstance(value, bool) and digit_count(value) > 15:
        return f"an integer of {digit_count(value):,} digits ({show_int(value)})"
    text = _BRIEF.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _BriefRepr(reprlib.Repr):
    """repr() for messages, bounded in work as well as in length. A mapping handed to the API (a
    saved model's stored spec) may hold containers nested thousands deep, lists that share their
    items (a few kB of pickle memo references make 2^60 paths), or integers past the 4,300 digits
    that Python's repr refuses; plain repr() would recurse, run for ever, or raise."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxstring, self.maxother = 3, 8, 8, 4, 40, 40

    def repr_int(self, x: int, level: int) -> str:
        return show_int(x) if digit_count(x) > 15 else repr(x)


_BRIEF = _BriefRepr()


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- allowed keys, from the schema


def _mapping_hint(path: KeyPath, data: Any, received: Any) -> str | None:
    """`preprocessing: per_channel_mean` where a mapping is expected: the key of that mapping
    that takes the value (`preprocessing: {mode: per_channel_mean}`), else its keys."""
    node = schema_node(path, data)
    if node is None:
        return None
    key = str(path[-1]) if path else "spec"
    discriminator = node.get("discriminator", {})
    if isinstance(received, str) and received in discriminator.get("mapping", {}):
        return f"write `{key}: {{{discriminator['propertyName']}: {received}}}`"
    properties = _resolve(_schema(), node, {}).get("properties", {})
    for name, prop in properties.items():
        if isinstance(received, str) and received in _enum_of(prop):
            return f"write `{key}: {{{name}: {received}}}`"
    return f"{key} is a mapping with the keys {', '.join(sorted(properties))}" if properties else None


def _enum_of(prop: dict[str, Any]) -> list[Any]:
    prop = _resolve(_schema(), prop, None) if "$ref" in prop else prop
    values = list(prop.get("enum", [])) + ([prop["const"]] if "const" in prop else [])
    for branch in prop.get("anyOf", []) + prop.get("oneOf", []):
        values += _enum_of(branch)
    return values


def schema_node(path: KeyPath, data: Any) -> dict[str, Any] | None:
    """The JSON Schema node of the value at ``path`` (unresolved), or None off the schema."""
    schema = _schema()
    node: Any = schema
    value = data
    for part in path:
        node = _resolve(schema, node, value)
        if isinstance(part, int):
            node = node.get("items", {})
        elif "properties" in node and part in node["properties"]:
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
        value = _value_at(value, (part,))
    return node


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return ResNetSpec.model_json_schema()


def allowed_keys(path: KeyPath, data: Any) -> list[str]:
    """The keys the schema allows at ``path`` of ``data`` (for "did you mean")."""
    node = schema_node(path, data)
    return [] if node is None else sorted(_resolve(_schema(), node, _value_at(data, path)).get("properties", {}))


def _matching(root: dict[str, Any], branches: list[dict[str, Any]], value: Any) -> dict[str, Any]:
    """The branch whose fixed values (``const`` properties: a stage's `block`, a shortcut's
    `kind`) agree with ``value``; else the one without any (the custom-block stage, the default
    projection); else the first."""
    loose = None
    for branch in branches:
        target = root["$defs"][branch["$ref"].rsplit("/", 1)[-1]] if "$ref" in branch else branch
        fixed = {k: p["const"] for k, p in target.get("properties", {}).items() if "const" in p}
        if fixed and isinstance(value, dict) and all(value.get(k, target["properties"][k].get("default")) == v for k, v in fixed.items()):
            return branch
        if not fixed and loose is None:
            loose = branch
    return loose or branches[0]


def _resolve(root: dict[str, Any], node: dict[str, Any], value: Any) -> dict[str, Any]:
    """Follow $ref, and pick the anyOf/oneOf branch that fits ``value`` (by discriminator or by object-ness)."""
    for _ in range(16):
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "discriminator" in node and isinstance(value, dict):
            tag = value.get(node["discriminator"]["propertyName"])
            target = node["discriminator"]["mapping"].get(tag)
            node = {"$ref": target} if target else {}
        elif "anyOf" in node or "oneOf" in node:
            branches = node.get("anyOf") or node.get("oneOf") or []
            objects = [b for b in branches if "$ref" in b or b.get("type") == "object" or "properties" in b or "oneOf" in b]
            node = _matching(root, objects, value) if objects else {}
        else:
            return node
    return node
