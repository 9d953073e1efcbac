"""Command-line overrides, ``--set key.path=value``: applied to the loaded document before the
schema check, so an override is validated exactly as the same value in the file would be.

A missing mapping on the way is created (``--set defaults.norm.epsilon=1e-5`` on a spec without
``defaults``); list items must exist, since a new list cannot be told from a mapping with
numeric keys. Diagnostics about an overridden value, or about anything inside a created
section, point at the override instead of the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .diagnostics import Diagnostic, KeyPath, format_key_path
from .loader import LoadedDocument, SourceMap
from .yaml_events import _NOTHING, Limits, _Builder, _copy

_INDEX = re.compile(r"[0-9]+\Z")
_HINT = "write --set key.path=value; list items are numbered from 0, e.g. stages.0.blocks=3"


def apply(document: LoadedDocument, overrides: Sequence[str]) -> LoadedDocument:
    """Return a new document with each ``key.path=value`` applied; the input document is not changed."""
    if not document.ok or not overrides:
        return document
    data = _copy(document.data)
    old = document.source
    source = replace(old, key_positions=dict(old.key_positions), value_positions=dict(old.value_positions),
                     overrides=dict(old.overrides))  # fmt: skip
    problems = [p for p in (_apply_one(data, source, text) for text in overrides) if p is not None]
    return LoadedDocument(None if problems else data, source, list(document.diagnostics) + problems)


def _apply_one(data: dict[str, Any], source: SourceMap, text: str) -> Diagnostic | None:
    def bad(message: str, path: KeyPath = ()) -> Diagnostic:
        return Diagnostic("RS011", f"override '{text}': {message}", file=f"--set {text}", key_path=path, hint=_HINT)

    raw_path, sep, raw_value = text.partition("=")
    parts = raw_path.strip().split(".")
    if not sep or "" in parts:
        return bad("missing '='" if not sep else "the key path has an empty part")
    value_doc = _Builder(f"--set {text}", Limits()).run(raw_value)
    if value_doc.diagnostics:
        return bad(f"cannot read the value: {value_doc.diagnostics[0].message}")
    value = None if value_doc.root is _NOTHING else value_doc.root
    target: Any = data
    path: KeyPath = ()
    created: KeyPath | None = None  # the first mapping this override made, if any
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(target, list):
            if not _INDEX.match(part) or int(part) >= len(target):
                return bad(f"'{part}' is not an index of the list at '{format_key_path(path)}' "
                           f"({len(target)} items)", path + (part,))  # fmt: skip
            key: str | int = int(part)
        elif isinstance(target, dict):
            key = part
            if not last and target.get(key) is None:  # absent, or an empty `key:` in YAML
                if _INDEX.match(parts[i + 1]):
                    return bad(f"'{format_key_path(path + (key,))}' does not exist, and --set cannot make a list "
                               f"item; set the whole list, e.g. {format_key_path(path + (key,))}=[...]", path + (key,))  # fmt: skip
                target[key] = {}
                created = created or path + (key,)
        else:
            return bad(f"'{format_key_path(path)}' is {_kind(target)}, not a mapping or list", path)
        path += (key,)
        if last:
            target[key] = value
        else:
            target = target[key]
    source._set_by_override(created or path, text)
    return None


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    return names.get(type(value), "a value")
