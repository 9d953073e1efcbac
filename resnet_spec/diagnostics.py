"""Typed diagnostics: what every stage of the pipeline reports instead of raising.

A diagnostic carries a stable code (``RS201``), a severity, a message that says what was
received and what was expected, an optional hint that says how to fix it, and the place:
file, line, column and the key path inside the document (``stages.1.shortcut``).

The catalogue of codes lives in :data:`CODES`; ``docs/diagnostics.md`` is generated from it and
a test keeps the two in step.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum

KeyPath = tuple[str | int, ...]


def digit_count(value: int) -> int:
    """Decimal digits of an integer of any size, without ``str()`` (refused past 4,300 digits)."""
    value = abs(value)
    if value < 10:
        return 1
    exponent = int((value.bit_length() - 1) * 0.30102999566398120)  # never above log10(value)
    while 10 ** (exponent + 1) <= value:
        exponent += 1
    return exponent + 1


def show_int(value: int, exact_digits: int = 15) -> str:
    """An integer for a message: exact with separators up to ``exact_digits``, else ``1.23e+4299``.

    User files may hold integers of thousands of digits (YAML has no limit), and Python refuses to
    turn integers past 4,300 digits into text, so every user-derived integer goes through here.
    """
    digits = digit_count(value)
    if digits <= exact_digits:
        return f"{value:,}"
    leading = abs(value) // 10 ** (digits - 3)
    sign = "-" if value < 0 else ""
    return f"{sign}{leading // 100}.{leading % 100:02d}e+{digits - 1:02d}"


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class CodeInfo:
    title: str
    explanation: str


# The catalogue. Codes are stable: never renumber, only add.
CODES: dict[str, CodeInfo] = {
    # RS0xx: reading the file
    "RS001": CodeInfo("file not readable", "The file does not exist or cannot be read."),
    "RS002": CodeInfo("not UTF-8", "Spec files must be UTF-8 text."),
    "RS003": CodeInfo("YAML syntax error", "The YAML parser could not read the document."),
    "RS004": CodeInfo("JSON syntax error", "The JSON parser could not read the document."),
    "RS005": CodeInfo("duplicate key", "A mapping holds the same key twice; YAML parsers silently keep the last one, resnet-spec refuses."),
    "RS006": CodeInfo("file too large", "The file exceeds the size limit for spec files."),
    "RS007": CodeInfo("too many aliases", "The document uses more YAML aliases, or expands to more nodes, than allowed (alias bombs)."),
    "RS008": CodeInfo("nesting too deep", "The document nests mappings or lists deeper than allowed."),
    "RS009": CodeInfo("unsafe YAML tag", "The document uses a tag that would construct a Python object or an unknown type."),
    "RS010": CodeInfo("not a mapping", "The top level of a spec must be a mapping of keys to values."),
    "RS011": CodeInfo("bad override", "A --set override is not of the form key.path=value, or its path does not exist."),
    # RS1xx: structure and values (the schema check)
    "RS101": CodeInfo("unknown key", "A key that the spec language does not define at this place."),
    "RS102": CodeInfo("missing key", "A required key is absent."),
    "RS103": CodeInfo("wrong type", "A value has the wrong type (for example a string where a number is expected)."),
    "RS104": CodeInfo("unknown value", "A value is not one of the allowed choices."),
    "RS105": CodeInfo("out of range", "A number lies outside its allowed range."),
    "RS106": CodeInfo("unsupported version", "The spec's `version` is not one this release understands."),
    "RS107": CodeInfo("invalid value", "A value is malformed or contradicts another value in the same section."),
    "RS108": CodeInfo("unknown block kind", "A stage names a block kind that is neither built in nor declared under `blocks`."),
    "RS109": CodeInfo("misplaced layer option", "A layer option that only makes sense elsewhere (for example `stride: block` outside a custom block)."),
    "RS110": CodeInfo("too many problems", "The document has more problems than are listed (the first 100 are); this one says how many more, at the first of them."),
    "RS111": CodeInfo("option does not apply here", "An option that the stage's block kind (or its shortcut's kind) would not build: the hint names the kinds it applies to."),
    # RS2xx: architecture (the graph passes)
    "RS201": CodeInfo("residual shape mismatch", "The two inputs of a residual add have different shapes."),
    "RS202": CodeInfo("spatial size vanishes", "A layer would produce a feature map with zero height or width."),
    "RS203": CodeInfo("window does not fit", "A pooling or convolution window is larger than its (padded) input."),
    "RS204": CodeInfo("zero-pad shortcut cannot shrink", "A zero-pad shortcut (option A) can only add channels, never remove them."),
    "RS205": CodeInfo("depth mismatch", "The declared `depth` does not match the structure, or no block count gives it."),
    "RS206": CodeInfo("groups do not divide channels", "A grouped convolution needs input and output channels divisible by `groups`."),
    "RS207": CodeInfo("model too large", "The estimated size of the network exceeds the safety limits; nothing was allocated."),
    "RS208": CodeInfo("width not an integer", "A derived channel count (bottleneck width, width multiplier, squeeze-excite) is not a whole number."),
    "RS209": CodeInfo("head shape", "The head does not reduce the feature map to a vector before the classifier."),
    "RS210": CodeInfo("unknown feature", "A backbone's `head.features` names no stage (`stem`, `stage1`...) or node of the graph, or names one node twice."),
    "RS211": CodeInfo("backbone with a classifier", "A backbone (`head.features`) is given `classes`, head layers, a classifier, an output or a training section: it returns feature maps, not class scores."),
    # RS3xx: training section
    "RS301": CodeInfo("schedule boundaries", "Learning-rate schedule boundaries must increase and lie inside the training run."),
    "RS302": CodeInfo("schedule values", "A piecewise schedule needs one more value than boundaries."),
    "RS303": CodeInfo("augmentation", "An augmentation setting does not fit the input."),
    "RS304": CodeInfo("preprocessing", "A preprocessing mode does not fit the input (for example `caffe` needs 3 channels)."),
    "RS305": CodeInfo("frozen part", "`training.freeze` names a part the network does not have (it has `stem`, `stage1` .. `stageN` and `backbone`)."),
    # RS9xx: warnings and notes
    "RS901": CodeInfo("unusual setting", "A legal but unusual setting that is often a mistake."),
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    severity: Severity = Severity.ERROR
    hint: str | None = None
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    key_path: KeyPath = ()

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise KeyError(f"diagnostic code {self.code!r} is not in the catalogue")

    @property
    def key(self) -> str:
        """The key path as users write it on the command line: ``stages.1.shortcut``."""
        return format_key_path(self.key_path)

    def located(self, file: str | None, line: int | None, column: int | None) -> Diagnostic:
        return replace(self, file=file, line=line, column=column)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["key_path"] = list(self.key_path)
        data["key"] = self.key
        return data


def format_key_path(path: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in path)


@dataclass
class Report:
    """All diagnostics found for one document, in one pass."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.diagnostics)

    def __len__(self) -> int:
        return len(self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, items: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.diagnostics, key=lambda d: (d.file or "", d.line or 0, d.column or 0, d.code))


class SpecError(ValueError):
    """Raised by the convenience API (``resnet_spec.build``) when a spec has errors.

    ``validate`` never raises it: it returns a :class:`Report` instead.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(render_text(self.diagnostics, source=None)))


def render_one(diag: Diagnostic, source_lines: Sequence[str] | None = None) -> str:
    """Compiler-style text: ``file:line:col: error RS201: message``, the source line and a caret."""
    place = diag.file or "<spec>"
    if diag.line is not None:
        place += f":{diag.line}"
        if diag.column is not None:
            place += f":{diag.column}"
    head = f"{place}: {diag.severity.value} {diag.code}: {diag.message}"
    if diag.key_path:
        head += f" [at {diag.key}]"
    lines = [head]
    if source_lines is not None and diag.line is not None and 0 < diag.line <= len(source_lines):
        text = source_lines[diag.line - 1].rstrip("\n")
        lines.append(f"  {diag.line:>4} | {text}")
        if diag.column is not None:
            lines.append("       | " + " " * (diag.column - 1) + "^")
    if diag.hint:
        lines.append(f"  hint: {diag.hint}")
    return "\n".join(lines)


def render_text(diagnostics: Iterable[Diagnostic], source: str | None) -> list[str]:
    source_lines = source.splitlines() if source is not None else None
    return [render_one(d, source_lines) for d in diagnostics]


def catalogue_markdown() -> str:
    """``docs/diagnostics.md``; a test keeps the committed file equal to this."""
    lines = [
        "# Diagnostic codes",
        "",
        "Generated by `resnet-spec codes --markdown` from `resnet_spec/diagnostics.py`. Codes are stable:",
        "they are never renumbered, only added. RS0xx: reading the file; RS1xx: structure and values;",
        "RS2xx: the architecture (graph passes); RS3xx: the training section; RS9xx: warnings.",
        "",
        "| code | title | meaning |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {code} | {info.title} | {info.explanation} |" for code, info in CODES.items()]
    return "\n".join(lines) + "\n"


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)


_CONTROL = ("Cc", "Cf", "Zl", "Zp")  # control, format (bidi overrides), line and paragraph separators


def printable(text: object, keep_newlines: bool = False) -> str:
    """``text`` with control characters escaped as Python does (``\\x1b``, ``\\n``, ``\\u202e``), so
    a file name or key cannot move the cursor, recolour the terminal or forge a line.
    ``keep_newlines``: a block of text (a report with source lines) keeps its newlines and tabs,
    so a quoted source line shows the tab a message is about."""
    out = []
    for ch in str(text):
        if (ch in "\n\t" and keep_newlines) or unicodedata.category(ch) not in _CONTROL:
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if ch.isascii() or ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)
