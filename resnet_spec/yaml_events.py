"""YAML events -> plain Python data, positions and diagnostics (the loader's engine).

Values are built straight from the parser's *event* stream rather than from composed nodes:
PyYAML's composers recurse once per nesting level (the C one crashes the whole process on input
nested ~100k deep), while the event parsers are iterative. Building from events also lets us
record the position of every key and value, spot duplicate keys, refuse every tag except plain
str/int/float/bool/null/list/map, and stop the moment a limit is hit (alias bombs, deep nesting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events as ev

from .diagnostics import Diagnostic, KeyPath
from .yaml_syntax import explain

# libyaml's parser is ~10x faster, and unlike the pure one it accepts tab-indented JSON. From
# libyaml 0.2.6 (PyYAML 6.0.3's wheels on) it refuses nesting past its own limit of 1,000 levels,
# and its scanner reads up to 1,024 characters ahead, so that on a line of brackets it can fail
# before the builder sees the level where Limits.max_depth is crossed. The pure parser has no
# such limit: a document libyaml refuses for its nesting is read again with it (up to the
# builder's limit only, so that costs no more than the first read).
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PureParser = yaml.SafeLoader
_LIBYAML_NESTING = "exceeded maximum nesting depth"
_T = "tag:yaml.org,2002:"


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1 resolution, plus exponents with no dot or no sign (`lr: 1e-3`), which YAML 1.1 reads as a
    string: specs write learning rates and epsilons that way, and YAML 1.2 and JSON read them as floats."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper with the same resolution, so that it quotes the strings this loader would read as
    numbers (`name: "1e5"`); plain SafeDumper, following YAML 1.1, would write them bare."""


_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (_Resolver, _Dumper):
    _cls.add_implicit_resolver(_T + "float", _EXPONENT, list("-+0123456789"))
_RESOLVER = _Resolver()
_SAFE = yaml.constructor.SafeConstructor()
_STR, _MERGE = _T + "str", _T + "merge"
_SCALARS = {  # the only scalar types a spec may hold, built with SafeLoader's own rules
    _STR: _SAFE.construct_yaml_str,
    _T + "int": _SAFE.construct_yaml_int,
    _T + "float": _SAFE.construct_yaml_float,
    _T + "bool": _SAFE.construct_yaml_bool,
    _T + "null": _SAFE.construct_yaml_null,
}
_COLLECTIONS = {ev.MappingStartEvent: (_T + "map", dict), ev.SequenceStartEvent: (_T + "seq", list)}
_KEY, _BAD, _NOTHING = object(), object(), object()  # sentinels: awaiting a key / refused key / no document
_SCALAR_CACHE: dict[tuple, Any] = {}  # (tag, text, implicit, is_key) -> value, for scalars that load cleanly


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1_000_000  # file size
    max_aliases: int = 100  # alias (*ref) uses in one document
    max_nodes: int = 200_000  # scalars+mappings+sequences after alias expansion
    max_depth: int = 64  # nesting of mappings/sequences


class _Stop(Exception):
    """A limit was hit: stop reading at once (the diagnostic is already recorded)."""


@dataclass
class _Frame:
    value: dict | list
    path: KeyPath | None  # None: a collection whose value is thrown away (used as a key, or under a bad key)
    mark: Any
    anchor: str | None
    nodes_before: int
    child_height: int = 0
    key: Any = _KEY  # mappings: _KEY while awaiting a key, else the pending key (or _BAD)
    first_lines: dict[str, int] = field(default_factory=dict)


class _Builder:
    """Turns one YAML event stream into plain values, positions and diagnostics."""

    def __init__(self, file: str | None, limits: Limits):
        self.file, self.limits = file, limits
        self._reset()

    def _reset(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.keys: dict[KeyPath, tuple[int, int]] = {}
        self.values: dict[KeyPath, tuple[int, int]] = {}
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, node count, height)
        self.nodes = self.aliases = self.documents = 0
        self.root: Any = _NOTHING
        self.stopped = False

    def run(self, text: str) -> _Builder:
        self._read(text, _Parser)
        if self.diagnostics and self.diagnostics[-1].message == _LIBYAML_NESTING and _Parser is not _PureParser:
            self._reset()
            self._read(text, _PureParser)
        return self

    def _read(self, text: str, parser: type) -> None:
        handlers = {ev.ScalarEvent: self._scalar, ev.AliasEvent: self._alias, ev.MappingStartEvent: self._open,
                    ev.SequenceStartEvent: self._open, ev.MappingEndEvent: self._close,
                    ev.SequenceEndEvent: self._close, ev.DocumentStartEvent: self._document}
        try:
            for event in iter(parser(text).get_event, None):  # the pure Reader may fail already on creation
                handler = handlers.get(type(event))
                if handler:
                    handler(event)
        except _Stop:
            self.stopped = True
        except yaml.MarkedYAMLError as exc:
            if exc.problem == _LIBYAML_NESTING:  # run() reads the document again with the pure parser
                self._syntax_error(exc.problem, exc.problem_mark, None)
            else:
                problem = explain(exc, text)
                self._syntax_error(problem.message, problem.mark, problem.hint)
        except yaml.reader.ReaderError as exc:  # a control character, say: only an offset is given
            before = text[: exc.position]
            mark = yaml.Mark("", exc.position, before.count("\n"), exc.position - before.rfind("\n") - 1, None, None)
            self._syntax_error(f"character {chr(exc.character)!r}: {exc.reason}", mark, None)
        except RecursionError:  # only copying an alias recurses, and only past a huge Limits.max_depth
            self.stopped = True
            self._report("RS008", "the document nests too deeply to read", None, ())

    # -- diagnostics -------------------------------------------------------------------------
    def _report(self, code: str, message: str, mark: Any, path: KeyPath | None, hint: str | None = None) -> None:
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        where = path if path is not None else self._container_path()
        self.diagnostics.append(Diagnostic(code, message, hint=hint, file=self.file, line=line, column=col,
                                           key_path=where))

    def _stop(self, code: str, message: str, mark: Any, path: KeyPath | None, hint: str | None = None) -> None:
        self._report(code, message, mark, path, hint)
        raise _Stop

    def _syntax_error(self, problem: str, mark: Any, context: str | None) -> None:
        self.stopped = True
        self._report("RS003", problem, mark, (), hint=context)

    def _container_path(self) -> KeyPath:
        paths = [f.path for f in self.stack if f.path is not None]
        return paths[-1] if paths else ()

    # -- where the next node goes ------------------------------------------------------------
    def _slot(self) -> tuple[KeyPath | None, bool]:
        """(path of the next node, or None when its value is not kept by path; whether it is a mapping key)."""
        if not self.stack:
            return (), False
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (None if top.path is None else top.path + (len(top.value),)), False
        if top.key is _KEY:
            return None, True
        return (None if top.path is None or top.key is _BAD else top.path + (top.key,)), False

    def _count(self, n: int, mark: Any) -> None:
        self.nodes += n  # counted as built, so a bomb is refused long before it is expanded
        if self.nodes > self.limits.max_nodes:
            self._stop("RS007", f"the document expands to more than {self.limits.max_nodes} nodes", mark, None,
                       hint="aliases (*name) copy whole subtrees; write the spec without alias chains")

    def _deliver(self, value: Any, height: int, mark: Any, raw: str | None = None) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.child_height = max(top.child_height, height)
        if isinstance(top.value, list):
            top.value.append(value)
        elif top.key is _KEY:
            self._take_key(top, value, mark, raw)
        else:
            if top.key is not _BAD:
                top.value[top.key] = value
            top.key = _KEY

    def _take_key(self, top: _Frame, key: Any, mark: Any, raw: str | None) -> None:
        parent = top.path if top.path is not None else ()
        if not isinstance(key, str):
            top.key = _BAD
            self._report("RS103", f"keys must be strings, got {type(key).__name__} {key!r}", mark, parent,
                         hint=f"quote the key (\"{raw if raw is not None else key}\": ...); "
                         "YAML reads 1, yes, on, null as non-strings")
            return
        top.key = key
        if key in top.first_lines:
            self._report("RS005", f"duplicate key '{key}' (first defined on line {top.first_lines[key]})", mark,
                         parent + (key,), hint="remove one of them; YAML would silently keep the last")
            return
        top.first_lines[key] = mark.line + 1
        if top.path is not None:
            self.keys[top.path + (key,)] = (mark.line + 1, mark.column + 1)

    def _record(self, path: KeyPath | None, mark: Any) -> None:
        if path is not None:
            self.values[path] = (mark.line + 1, mark.column + 1)

    # -- event handlers ----------------------------------------------------------------------
    def _document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            self._syntax_error("expected a single document, found a second one", event.start_mark, None)
            raise _Stop

    def _scalar(self, event: Any) -> None:  # the hot path: about half of all events are scalars
        mark = event.start_mark
        path, is_key = self._slot()
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            self._count(0, mark)
        if path is not None:
            self.values[path] = (mark.line + 1, mark.column + 1)
        cache_key = (event.tag, event.value, event.implicit, is_key)
        value = _SCALAR_CACHE.get(cache_key, _NOTHING)
        if value is _NOTHING:  # specs repeat the same keys and values: resolve each spelling once
            reported = len(self.diagnostics)
            value = self._scalar_value(event, is_key, path)
            if len(self.diagnostics) == reported and len(_SCALAR_CACHE) < 50_000:
                _SCALAR_CACHE[cache_key] = value  # values are immutable, so sharing them is safe
        if event.anchor:
            self.anchors[event.anchor] = (value, 1, 0)
        self._deliver(value, 0, mark, event.value)

    def _scalar_value(self, event: Any, is_key: bool, path: KeyPath | None) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _MERGE and is_key:
                self._report("RS009", "YAML merge keys (<<) are not supported", event.start_mark, path,
                             hint="write the keys out, or alias the whole mapping (key: *name)")
                return event.value  # a string key, so that it is not also reported as a non-string one
            if tag not in _SCALARS:
                tag = _STR  # implicit timestamps and the like stay strings
        elif tag not in _SCALARS:
            return self._unsafe(tag, event.start_mark, path)
        if tag == _STR:
            return event.value
        try:
            return _SCALARS[tag](yaml.ScalarNode(tag, event.value))
        except (ValueError, KeyError):  # an explicit !!int abc, !!bool maybe
            self._report("RS103", f"{event.value!r} is not a valid {_short(tag)}", event.start_mark, path)
            return None

    def _unsafe(self, tag: str, mark: Any, path: KeyPath | None) -> None:
        self._report("RS009", f"unsafe YAML tag {_short(tag)}: only strings, numbers, booleans, null, lists "
                     "and mappings are allowed", mark, path, hint="remove the tag; specs never construct objects")

    def _open(self, event: Any) -> None:
        path, _ = self._slot()
        mark = event.start_mark
        before = self.nodes
        self._count(1, mark)
        if len(self.stack) >= self.limits.max_depth:
            self._stop("RS008", f"mappings and lists nest more than {self.limits.max_depth} levels deep", mark, path)
        tag, make = _COLLECTIONS[type(event)]
        if event.tag not in (None, "!", tag):
            self._unsafe(event.tag, mark, path)
        self._record(path, mark)
        self.stack.append(_Frame(make(), path, mark, event.anchor, before))

    def _close(self, event: Any) -> None:
        frame = self.stack.pop()
        height = frame.child_height + 1
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.value, self.nodes - frame.nodes_before, height)
        self._deliver(frame.value, height, frame.mark)

    def _alias(self, event: Any) -> None:
        path, _ = self._slot()
        mark, limits = event.start_mark, self.limits
        self.aliases += 1
        if self.aliases > limits.max_aliases:
            self._stop("RS007", f"the document uses more than {limits.max_aliases} aliases", mark, path)
        if event.anchor not in self.anchors:
            self._syntax_error(f"alias *{event.anchor} refers to no anchor defined before it", mark, None)
            raise _Stop
        value, count, height = self.anchors[event.anchor]
        self._count(count, mark)
        if len(self.stack) + height > limits.max_depth:
            self._stop("RS008", f"alias *{event.anchor} nests the document more than {limits.max_depth} levels deep",
                       mark, path)
        self._record(path, mark)
        self._deliver(_copy(value), height, mark)  # a fresh copy: overrides must not leak into the anchor


def dump_yaml(data: Any) -> str:
    """YAML text that :func:`load_text` reads back as ``data`` (plain data: what it loads)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _short(tag: str) -> str:
    return "!!" + tag[len(_T):] if tag.startswith(_T) else tag


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
