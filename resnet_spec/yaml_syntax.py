"""PyYAML's syntax errors in words a spec author can act on.

PyYAML reports where parsing *failed*: for an unclosed ``[``, ``{`` or quote that is often the
end of the file or the next top-level key, far below the mistake. The construct's opening
(PyYAML's "context mark") is where the fix goes, so that is where these errors point; the place
where the parser gave up is named in the message. A tab where YAML expects indentation is
called a tab, since "cannot start any token" does not say what is wrong with an invisible
character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

_OPENED = {  # PyYAML's context -> (what opened, how it closes)
    "while parsing a flow sequence": ("list", "]"),
    "while parsing a flow mapping": ("mapping", "}"),
    "while scanning a quoted scalar": ("quoted string", None),
}


@dataclass(frozen=True)
class SyntaxProblem:
    message: str
    mark: Any  # a yaml.Mark (0-based line and column)
    hint: str | None


def explain(exc: Any, text: str) -> SyntaxProblem:
    """A message, the place to point at and a hint for a ``yaml.MarkedYAMLError``."""
    problem = exc.problem or str(exc)
    mark, context, opened = exc.problem_mark, exc.context, exc.context_mark
    if _char_at(text, mark) == "\t" or "tab" in problem:
        return SyntaxProblem("a tab character where YAML expects indentation or a value: YAML indents with spaces only",
                             _tab_mark(text, mark), "replace the tab with spaces (an editor's 'convert indentation to spaces')")  # fmt: skip
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "the end of the file"
    if context in _OPENED and opened is not None:
        what, closer = _OPENED[context]
        if closer is None:
            quote = _char_at(text, opened) or '"'
            ends = f"the file ends at line {mark.line + 1}" if "end of stream" in problem else f"{problem} at {where}"
            return SyntaxProblem(f"this quoted string is never closed ({ends})", opened,
                                 f"add the closing {quote}, or escape a {quote} inside the string")  # fmt: skip
        separator = "items" if what == "list" else "entries"
        return SyntaxProblem(
            f"this {what}'s `{_char_at(text, opened) or '?'}` has no matching `{closer}`, or two of its {separator} "
            f"lack a comma between them (at {where}: {problem})", opened,
            f"close the {what} with `{closer}`, or put a comma between its {separator}",
        )  # fmt: skip
    hint = f"{context} that starts on line {opened.line + 1}" if context and opened is not None else context
    return SyntaxProblem(problem, mark, hint)


def _char_at(text: str, mark: Any) -> str | None:
    if mark is None:
        return None
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines) or not 0 <= mark.column < len(lines[mark.line]):
        return None
    return lines[mark.line][mark.column]


def _tab_mark(text: str, mark: Any) -> Any:
    """The first tab of the line (PyYAML sometimes reports the character after it)."""
    lines = text.splitlines()
    if mark is None or not 0 <= mark.line < len(lines) or "\t" not in lines[mark.line]:
        return mark
    return yaml.Mark(mark.name, mark.index, mark.line, lines[mark.line].index("\t"), None, None)
