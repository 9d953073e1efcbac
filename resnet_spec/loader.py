"""Read a spec file (YAML or JSON) into plain Python data, safely, with a source map.

The YAML event parser does the reading (:mod:`resnet_spec.yaml_events`); this module adds files,
encodings, size limits, JSON and the source map that gives every later diagnostic its file, line
and column. Problems in the input never raise: they come back as located :class:`Diagnostic`
objects.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .diagnostics import Diagnostic, KeyPath, Severity
from .yaml_events import _NOTHING, Limits, _Builder, dump_yaml

_DEFAULT_LIMITS = Limits()

__all__ = ["Limits", "LoadedDocument", "SourceMap", "apply_overrides", "dump_yaml", "load_file", "load_text"]


@dataclass
class SourceMap:
    file: str | None
    text: str
    key_positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    value_positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[KeyPath, str] = field(default_factory=dict)  # path set by --set -> the override text

    def _overridden(self, path: KeyPath) -> str | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.overrides:
                return self.overrides[path[:end]]
        return None

    def locate(self, path: KeyPath, *, prefer: Literal["key", "value"] = "value") -> tuple[int | None, int | None]:
        """Position of the longest prefix of `path` that exists (so a missing key points at its parent)."""
        if self._overridden(path) is not None:
            return None, None  # the value came from the command line, not from this file
        first, second = (self.key_positions, self.value_positions)
        if prefer == "value":
            first, second = second, first
        for end in range(len(path), -1, -1):
            hit = first.get(path[:end]) or second.get(path[:end])
            if hit:
                return hit
        return None, None

    def attach(self, diagnostic: Diagnostic, *, prefer: Literal["key", "value"] = "value") -> Diagnostic:
        text = self._overridden(diagnostic.key_path)
        if text is not None:
            return diagnostic.located(f"--set {text}", None, None)
        return diagnostic.located(self.file, *self.locate(diagnostic.key_path, prefer=prefer))

    def _set_by_override(self, path: KeyPath, text: str) -> None:
        for table in (self.key_positions, self.value_positions, self.overrides):
            for old in [p for p in table if p[: len(path)] == path]:
                del table[old]
        self.overrides[path] = text


@dataclass
class LoadedDocument:
    data: Any  # plain dict/list/str/int/float/bool/None; None unless ok
    source: SourceMap
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


def _decode(raw: bytes, file: str) -> str | Diagnostic:
    try:
        return raw.decode("utf-8-sig")  # a BOM is fine
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid UTF-8"
        return Diagnostic("RS002", message, hint="save the file as UTF-8", file=file, line=line, column=column)


def _load_json(text: str, builder: _Builder) -> Any:
    """Syntax and values from the json module; positions and duplicate keys from the YAML event parser."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    if not text.strip():
        return _NOTHING  # an empty file is "not a mapping" (RS010), as for YAML
    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        builder.diagnostics.append(Diagnostic("RS004", exc.msg, file=builder.file, line=exc.lineno, column=exc.colno))
        return _NOTHING
    except RecursionError:  # the event pass below says where the nesting gets too deep
        data = _NOTHING
    # libyaml refuses a tab where YAML expects indentation (a tab before the opening `{`, say). In
    # JSON that json.loads accepted, a tab can only be whitespace between tokens (strings cannot
    # hold a raw tab), so a space in its place reads the same, and every position stays where it
    # was: a tab is one column, as in json's own error positions.
    substitutes = _yaml_printable_substitutes(text)
    builder.run(text.replace("\t", " ").translate(substitutes))
    if substitutes:  # the positions were found under the stand-ins: key them by the document's own strings
        back = {ord(stand_in): chr(original) for original, stand_in in substitutes.items()}
        for table in (builder.keys, builder.values):
            restored = {tuple(p.translate(back) if isinstance(p, str) else p for p in path): at for path, at in table.items()}
            table.clear()
            table.update(restored)
    if data is _NOTHING and not builder.diagnostics:
        builder.diagnostics.append(Diagnostic("RS008", "the JSON nests too deeply to read", file=builder.file))
    if any(d.code == "RS003" for d in builder.diagnostics):  # valid JSON that YAML cannot read: no positions
        builder.keys.clear()
        builder.values.clear()
        builder.diagnostics = [Diagnostic("RS005", f"duplicate key '{k}'", file=builder.file) for k in duplicates]
    return data


# Characters a JSON string may hold raw that YAML refuses as unprintable (DEL, C1 controls,
# surrogates, U+FFFE/U+FFFF) or reads as line breaks (NEL, U+2028, U+2029): the event pass that finds positions reads the text with each one
# replaced by a private-use character that the text does not contain, one for one, so every
# position stays where it was.
_YAML_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _yaml_printable_substitutes(text: str) -> dict[int, str]:
    unprintable = sorted(set(_YAML_UNPRINTABLE.findall(text)))
    if not unprintable:
        return {}
    free = (chr(c) for c in range(0xF0000, 0xFFFFE) if chr(c) not in text)  # plane 15: private use
    return {ord(ch): next(free) for ch in unprintable}


def load_text(text: str | bytes, *, filename: str | None = None, fmt: Literal["yaml", "json"] | None = None,
              limits: Limits = _DEFAULT_LIMITS) -> LoadedDocument:
    file = filename if filename is not None else "<string>"
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) > limits.max_bytes:
        return _too_large(file, len(raw), limits)
    if isinstance(text, bytes):
        decoded = _decode(text, file)
        if isinstance(decoded, Diagnostic):
            return _failed(file, "", decoded)
        text = decoded
    text = text.removeprefix("\ufeff")
    if fmt is None:
        fmt = "json" if file.lower().endswith(".json") else "yaml"
    builder = _Builder(file, limits)
    data = _load_json(text, builder) if fmt == "json" else builder.run(text).root
    source = SourceMap(file, text, builder.keys, builder.values)
    problems = builder.diagnostics
    if not problems and not isinstance(data, dict):
        empty = data is _NOTHING or data is None
        line, col = (1, 1) if empty else source.locate(())
        what = "empty" if empty else f"a {type(data).__name__}"
        problems.append(Diagnostic("RS010", f"the top level of a spec must be a mapping, but the document is {what}",
                                   hint="start the file with keys such as `version:` and `stages:`",
                                   file=file, line=line, column=col))
    return LoadedDocument(data if not problems else None, source, problems)


def _failed(file: str | None, text: str, problem: Diagnostic) -> LoadedDocument:
    return LoadedDocument(None, SourceMap(file, text), [problem])


def _too_large(file: str, size: int, limits: Limits) -> LoadedDocument:
    message = f"the file is {size} bytes; the limit is {limits.max_bytes}"
    return _failed(file, "", Diagnostic("RS006", message, file=file, line=1, column=1,
                                        hint="spec files are small; is this the right file?"))


def load_file(path: str | os.PathLike, *, limits: Limits = _DEFAULT_LIMITS) -> LoadedDocument:
    """Read a spec file; `.json` files are JSON, anything else YAML; "-" reads standard input."""
    name = os.fsdecode(path)
    fmt: Literal["yaml", "json"] = "json" if name.lower().endswith(".json") else "yaml"
    try:
        if name == "-":
            name, raw = "<stdin>", sys.stdin.buffer.read(limits.max_bytes + 1)
        else:
            with open(name, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > limits.max_bytes:  # refuse before reading it
                    return _too_large(name, size, limits)
                raw = handle.read(limits.max_bytes + 1)  # a pipe has no size: one byte past the limit tells
    except OSError as exc:
        return _failed(name, "", Diagnostic("RS001", f"cannot read {name}: {exc.strerror or exc}", file=name))
    return load_text(raw, filename=name, fmt=fmt, limits=limits)


def apply_overrides(document: LoadedDocument, overrides: Sequence[str]) -> LoadedDocument:
    """``--set key.path=value`` overrides: see :mod:`resnet_spec.overrides`."""
    from .overrides import apply

    return apply(document, overrides)
