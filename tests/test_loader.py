"""Tests for resnet_spec.loader: safe loading, positions, limits and --set overrides."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Literal

import pytest
import yaml

from resnet_spec import pipeline, yaml_events
from resnet_spec.diagnostics import Diagnostic
from resnet_spec.loader import Limits, LoadedDocument, apply_overrides, load_file, load_text

SPEC = """\
version: 1
depth: 20
stages:
  - blocks: 3
    shortcut: identity
  - {blocks: 3, shortcut: projection}
defaults:
  norm:
    epsilon: 1.0e-5
"""


def codes(doc: LoadedDocument) -> list[str]:
    return [d.code for d in doc.diagnostics]


def only(doc: LoadedDocument, code: str) -> Diagnostic:
    assert codes(doc) == [code], doc.diagnostics
    assert doc.data is None and not doc.ok
    return doc.diagnostics[0]


# -- values and positions -----------------------------------------------------------------------

def test_yaml_values() -> None:
    doc = load_text(SPEC)
    assert doc.ok and doc.diagnostics == []
    assert doc.data == {
        "version": 1,
        "depth": 20,
        "stages": [{"blocks": 3, "shortcut": "identity"}, {"blocks": 3, "shortcut": "projection"}],
        "defaults": {"norm": {"epsilon": 1e-5}},
    }


def test_scalars_resolve_like_safe_loader() -> None:
    doc = load_text("a: 0x10\nb: yes\nc: ~\nd: '3'\ne: .inf\nf: 2020-01-01\ng: 1_000\nh: lr\ni: 1e-3\nj: !!str 5\n")
    d = doc.data
    assert d["a"] == 16 and d["b"] is True and d["c"] is None and d["d"] == "3"
    assert d["e"] == float("inf") and d["f"] == "2020-01-01" and d["g"] == 1000 and d["h"] == "lr"
    assert d["i"] == 1e-3 and isinstance(d["i"], float)  # deliberate: YAML 1.1 would give the string "1e-3"
    assert d["j"] == "5"


def test_positions_of_nested_keys_and_list_items() -> None:
    src = load_text(SPEC, filename="net.yaml").source
    assert src.file == "net.yaml"
    assert src.value_positions[()] == (1, 1)
    assert src.key_positions[("depth",)] == (2, 1)
    assert src.value_positions[("depth",)] == (2, 8)
    assert src.value_positions[("stages",)] == (4, 3)
    assert src.value_positions[("stages", 0)] == (4, 5)
    assert src.key_positions[("stages", 0, "shortcut")] == (5, 5)
    assert src.value_positions[("stages", 0, "shortcut")] == (5, 15)
    assert src.value_positions[("stages", 1)] == (6, 5)
    assert src.key_positions[("stages", 1, "shortcut")] == (6, 17)
    assert src.value_positions[("stages", 1, "shortcut")] == (6, 27)
    assert src.key_positions[("defaults", "norm", "epsilon")] == (9, 5)
    assert src.value_positions[("defaults", "norm", "epsilon")] == (9, 14)
    assert ("stages", 0) not in src.key_positions  # list items have no key


def test_locate_prefers_and_falls_back_to_parent() -> None:
    src = load_text(SPEC).source
    assert src.locate(("stages", 1, "shortcut")) == (6, 27)
    assert src.locate(("stages", 1, "shortcut"), prefer="key") == (6, 17)
    assert src.locate(("stages", 1), prefer="key") == (6, 5)  # no key: the item itself
    assert src.locate(("stages", 1, "width")) == (6, 5)  # missing key: its parent
    assert src.locate(("stages", 7, "blocks")) == (4, 3)
    assert src.locate(("nope",)) == (1, 1)


def test_attach_fills_file_line_column() -> None:
    src = load_text(SPEC, filename="net.yaml").source
    diag = src.attach(Diagnostic("RS104", "bad shortcut", key_path=("stages", 0, "shortcut")))
    assert (diag.file, diag.line, diag.column) == ("net.yaml", 5, 15)
    diag = src.attach(Diagnostic("RS101", "unknown key", key_path=("depth",)), prefer="key")
    assert (diag.line, diag.column) == (2, 1)


def test_aliases_are_expanded_as_independent_copies() -> None:
    doc = load_text("base: &b {blocks: 2, width: [16, 32]}\nother: *b\n")
    assert doc.data["other"] == {"blocks": 2, "width": [16, 32]}
    assert doc.data["other"] is not doc.data["base"]
    assert doc.data["other"]["width"] is not doc.data["base"]["width"]
    assert doc.source.value_positions[("other",)] == (2, 8)
    assert doc.source.locate(("other", "blocks")) == (2, 8)  # inside an alias: the alias itself


# -- duplicate and non-string keys ----------------------------------------------------------------

def test_duplicate_keys_all_reported_with_first_line() -> None:
    doc = load_text("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\n", filename="dup.yaml")
    assert codes(doc) == ["RS005", "RS005"] and doc.data is None and not doc.ok
    nested, top = doc.diagnostics
    assert nested.key_path == ("b", "c") and (nested.line, nested.column) == (5, 3)
    assert "'c'" in nested.message and "line 3" in nested.message
    assert top.key_path == ("a",) and (top.line, top.column) == (6, 1) and "line 1" in top.message
    assert top.file == "dup.yaml"


def test_duplicate_keys_inside_list_items() -> None:
    doc = load_text("stages:\n  - {blocks: 1, blocks: 2}\n")
    diag = only(doc, "RS005")
    assert diag.key_path == ("stages", 0, "blocks") and (diag.line, diag.column) == (2, 17)


@pytest.mark.parametrize("key", ["1", "yes", "on", "null", "[a, b]"])
def test_non_string_keys_refused(key: str) -> None:
    diag = only(load_text(f"stages:\n  {key}: x\n"), "RS103")
    assert "keys must be strings" in diag.message
    assert diag.key_path == ("stages",) and (diag.line, diag.column) == (2, 3)


def test_quoted_keys_are_strings() -> None:
    assert load_text("'1': x\n\"on\": y\n").data == {"1": "x", "on": "y"}


# -- JSON -------------------------------------------------------------------------------------

def test_json_values_and_positions() -> None:
    text = '{\n\t"depth": 20,\n\t"stages": [\n\t\t{"blocks": 3, "lr": 1e-3}\n\t]\n}\n'
    doc = load_text(text, fmt="json")
    assert doc.ok and doc.data == json.loads(text)
    assert isinstance(doc.data["stages"][0]["lr"], float)
    src = doc.source
    assert src.key_positions[("depth",)] == (2, 2)
    assert src.value_positions[("depth",)] == (2, 11)
    assert src.value_positions[("stages", 0)] == (4, 3)
    assert src.key_positions[("stages", 0, "lr")] == (4, 17)  # a tab counts as one column
    assert src.value_positions[("stages", 0, "lr")] == (4, 23)


def test_json_tabs_where_yaml_wants_indentation_keep_positions() -> None:
    """libyaml refuses a tab before the opening brace or before a closing one at the start of a
    line; JSON allows tabs anywhere between tokens, and the positions stay exact."""
    text = '\t{"depth": 20,\n\t"stages": [\n\t\t{"blocks": 3}\n\t],\n"x": "a\\tb"\n\t}\n'
    doc = load_text(text, fmt="json")
    assert doc.ok and doc.data == json.loads(text) and doc.data["x"] == "a\tb"  # an escaped tab stays a tab
    src = doc.source
    assert src.key_positions[("depth",)] == (1, 3)
    assert src.key_positions[("stages",)] == (2, 2)
    assert src.value_positions[("stages", 0, "blocks")] == (3, 14)
    assert src.key_positions[("x",)] == (5, 1)


def test_json_duplicate_keys() -> None:
    diag = only(load_text('{"a": {"x": 1,\n "x": 2}}', fmt="json"), "RS005")
    assert diag.key_path == ("a", "x") and (diag.line, diag.column) == (2, 2) and "line 1" in diag.message


def test_json_syntax_error_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n')
    diag = only(load_file(path), "RS004")
    assert (diag.file, diag.line, diag.column) == (str(path), 4, 1)


def test_json_top_level_must_be_object() -> None:
    assert only(load_text("[1, 2]", fmt="json"), "RS010").line == 1
    assert only(load_text("  \n", fmt="json"), "RS010")


def test_file_suffix_selects_format(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": 1e3}')
    (tmp_path / "a.yaml").write_text("x: [1, 2]\n")
    assert load_file(tmp_path / "a.json").data == {"x": 1000.0}
    assert load_file(tmp_path / "a.yaml").data == {"x": [1, 2]}
    assert only(load_text("x: 1\n", filename="spec.json"), "RS004").line == 1  # YAML is not JSON


# -- reading ----------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    diag = only(load_file(tmp_path / "absent.yaml"), "RS001")
    assert diag.file == str(tmp_path / "absent.yaml")
    assert only(load_file(tmp_path), "RS001")  # a directory


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"depth: 56\n")))
    doc = load_file("-")
    assert doc.data == {"depth": 56} and doc.source.file == "<stdin>"


def test_not_utf8_reports_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nname: caf\u00e9\n".encode("latin-1"))
    diag = only(load_file(path), "RS002")
    assert (diag.line, diag.column) == (2, 10) and "offset 14" in diag.message


def test_bom_accepted() -> None:
    doc = load_text(b"\xef\xbb\xbfdepth: 20\n")
    assert doc.data == {"depth": 20} and doc.source.value_positions[("depth",)] == (1, 8)
    assert load_text("\ufeff{\"depth\": 20}", fmt="json").data == {"depth": 20}


def test_yaml_syntax_error_location() -> None:
    diag = only(load_text("a: 1\nb: c: d\n", filename="s.yaml"), "RS003")
    assert (diag.file, diag.line, diag.column) == ("s.yaml", 2, 5)
    assert "mapping values are not allowed" in diag.message


SYNTAX = {  # mistake -> (text, line, column of the report, words the message must hold)
    "tab": ("version: 1\nstages:\n\t- {block: basic}\n", 3, 1, "tab character"),
    "tab_after_spaces": ("version: 1\nstem:\n  a: 1\n\tb: 2\n", 4, 1, "tab character"),
    "unclosed_list": ("version: 1\nstages: [\n  {block: basic},\n  {block: basic}\nclasses: 10\n", 2, 9,
                      "list's `[` has no matching `]`"),
    "unclosed_mapping": ("version: 1\ninput: {height: 32, width: 32\nclasses: 10\nhead: x\n", 2, 8,
                         "mapping's `{` has no matching `}`"),
    "unclosed_double_quote": ('version: 1\nname: "abc\nclasses: 10\n', 2, 7, "quoted string is never closed"),
    "unclosed_single_quote": ("version: 1\nname: 'abc\nclasses: 10\n", 2, 7, "quoted string is never closed"),
}


@pytest.mark.parametrize("parser", ["libyaml", "pure"])
@pytest.mark.parametrize("case", SYNTAX)
def test_syntax_errors_point_where_the_mistake_is(case: str, parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unclosed bracket or quote is reported where it opened, not where the parser gave up."""
    if parser == "pure":
        monkeypatch.setattr(yaml_events, "_Parser", yaml.SafeLoader)
    text, line, column, words = SYNTAX[case]
    diag = only(load_text(text), "RS003")
    assert (diag.line, diag.column) == (line, column) and words in diag.message, diag
    assert diag.hint


def test_control_character_is_a_syntax_error() -> None:
    diag = only(load_text("a: 1\nb: \x07\n"), "RS003")
    assert (diag.line, diag.column) == (2, 4)


def test_several_documents_refused() -> None:
    assert only(load_text("a: 1\n---\nb: 2\n"), "RS003").line == 2


def test_undefined_alias() -> None:
    assert only(load_text("a: *nowhere\n"), "RS003").line == 1


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "42\n", "- a\n- b\n", "just text"])
def test_top_level_must_be_mapping(text: str) -> None:
    diag = only(load_text(text), "RS010")
    assert diag.line == 1 and diag.column == 1


# -- unsafe input -----------------------------------------------------------------------------

def test_python_tag_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"a: 1\nb: !!python/object/apply:os.system ['touch {marker}']\n"
    diag = only(load_text(text), "RS009")
    assert not marker.exists()
    assert "python/object/apply:os.system" in diag.message
    assert diag.key_path == ("b",) and (diag.line, diag.column) == (2, 4)


@pytest.mark.parametrize("text", ["a: !!binary aGk=\n", "a: !!timestamp 2020-01-01\n", "a: !foo x\n",
                                  "a: !!set {x}\n", "a: !!python/name:os.system\n", "a: !!omap [x: 1]\n"])
def test_other_tags_refused(text: str) -> None:
    only(load_text(text), "RS009")


def test_all_unsafe_tags_reported() -> None:
    doc = load_text("a: !x 1\nb: !y 2\n")
    assert codes(doc) == ["RS009", "RS009"]


def test_merge_key_refused_with_hint() -> None:
    diag = only(load_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n"), "RS009")
    assert "merge" in diag.message and diag.hint and (diag.line, diag.column) == (3, 3)


def test_bad_explicit_scalar() -> None:
    assert only(load_text("a: !!int abc\n"), "RS103").key_path == ("a",)


def test_billion_laughs_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    start = time.process_time()  # CPU time: a shared CI machine stretches wall time
    doc = load_text("\n".join(lines) + "\n")
    # ~0.03 s here; 10^9 expanded nodes would take hours, so a wide margin still catches it.
    assert time.process_time() - start < 3.0
    assert only(doc, "RS007")


def test_node_limit_counts_alias_expansion() -> None:
    text = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: [*a, *a, *a]\n"
    assert load_text(text).ok
    assert only(load_text(text, limits=Limits(max_nodes=30)), "RS007").line == 2


def test_alias_count_limit() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    diag = only(load_text(text), "RS007")
    assert "aliases" in diag.message


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deep_nesting_refused(fmt: Literal["yaml", "json"]) -> None:
    text = '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"
    start = time.process_time()
    diag = only(load_text(text, fmt=fmt), "RS008")  # and no RecursionError escapes
    assert time.process_time() - start < 3.0  # CPU time, wide margin: refused before the 10,000 levels
    assert (diag.line, diag.column) == (1, 70)  # the 64th level: the root mapping and 63 lists fit


def test_very_deep_nesting_does_not_crash() -> None:
    # PyYAML's C composer overflows the C stack on this; the loader never composes nodes.
    only(load_text("[" * 400_000 + "]" * 400_000), "RS008")


class _NestingLimitedParser(yaml.SafeLoader):
    """libyaml 0.2.6 (PyYAML >= 6.0.3 wheels): refuses nesting past its own limit, and its scanner
    reads ahead, so the refusal can come before the builder reaches Limits.max_depth. Simulated
    here at 10 levels, so that the test means the same with any PyYAML."""

    def get_event(self):  # type: ignore[no-untyped-def]
        event = super().get_event()
        if self.flow_level > 10:
            raise yaml.scanner.ScannerError("while increasing flow level", event.start_mark,
                                            "exceeded maximum nesting depth", event.start_mark)
        return event


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_parser_nesting_limit_is_rs008_at_the_limit(fmt: Literal["yaml", "json"], monkeypatch: pytest.MonkeyPatch) -> None:
    text = '{\n  "a": 1,\n  "b": ' + "[" * 100 + "]" * 100 + "\n}"
    monkeypatch.setattr(yaml_events, "_Parser", _NestingLimitedParser)
    diag = only(load_text(text, fmt=fmt, limits=Limits(max_depth=20)), "RS008")
    assert (diag.line, diag.column) == (3, 27) and "20 levels" in diag.message  # root + 19 lists fit: the 20th list


@pytest.mark.parametrize("parser", ["libyaml", "pure"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deep_nesting_line_with_either_parser(parser: str, fmt: Literal["yaml", "json"], monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "pure":
        monkeypatch.setattr(yaml_events, "_Parser", yaml.SafeLoader)
    text = '{\n  "name": "x",\n  "stages": ' + "[" * 5000 + "]" * 5000 + "\n}"
    diag = only(load_text(text, fmt=fmt), "RS008")
    assert (diag.line, diag.column) == (3, 76)  # the root mapping and 63 lists fit: the 64th list (13 + 63)


def test_depth_through_alias() -> None:
    text = "a: &a [[[1]]]\nb: [[*a]]\n"
    assert load_text(text, limits=Limits(max_depth=6)).ok
    assert only(load_text(text, limits=Limits(max_depth=5)), "RS008").line == 2


def test_recursion_error_never_escapes() -> None:
    deep = "[" * 1500 + "]" * 1500  # deeper than Python's recursion limit
    doc = load_text(f"a: &a {deep}\nb: *a\n", limits=Limits(max_depth=100_000))
    assert codes(doc) == ["RS008"] and doc.data is None


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("".join(f"k{i:03}: 1\n" for i in range(500)))
    diag = only(load_file(path, limits=Limits(max_bytes=3999)), "RS006")  # the file is 4000 bytes
    assert "3999" in diag.message and diag.file == str(path)
    assert load_file(path, limits=Limits(max_bytes=4000)).ok
    assert only(load_text("x: " + "y" * 100, limits=Limits(max_bytes=50)), "RS006")


# -- overrides --------------------------------------------------------------------------------

def test_overrides_parse_values() -> None:
    doc = load_text(SPEC, filename="net.yaml")
    out = apply_overrides(doc, ["stages.1.shortcut=zero_pad", "depth=56", "defaults.norm.epsilon=1e-3",
                                "stages.0.widths=[1, 2]", "version=null", "name='7'"])
    assert out.ok, out.diagnostics
    assert out.data["stages"][1]["shortcut"] == "zero_pad"
    assert out.data["depth"] == 56
    assert out.data["defaults"]["norm"]["epsilon"] == 1e-3
    assert out.data["stages"][0]["widths"] == [1, 2]
    assert out.data["version"] is None and out.data["name"] == "7"
    assert doc.data["depth"] == 20 and "widths" not in doc.data["stages"][0]  # input untouched


def test_override_positions_point_at_the_override() -> None:
    doc = apply_overrides(load_text(SPEC, filename="net.yaml"), ["stages.1=[]", "depth=56"])
    src = doc.source
    assert src.overrides == {("stages", 1): "stages.1=[]", ("depth",): "depth=56"}
    assert src.locate(("stages", 1, "blocks")) == (None, None)
    assert src.locate(("stages", 0, "blocks")) == (4, 13)
    diag = src.attach(Diagnostic("RS105", "too deep", key_path=("depth",)))
    assert (diag.file, diag.line, diag.column) == ("--set depth=56", None, None)
    diag = src.attach(Diagnostic("RS102", "missing", key_path=("stages", 1, "blocks")))
    assert diag.file == "--set stages.1=[]"
    assert src.attach(Diagnostic("RS102", "x", key_path=("stages",))).file == "net.yaml"


def test_override_new_key_in_existing_mapping() -> None:
    out = apply_overrides(load_text(SPEC), ["defaults.norm.momentum=0.9"])
    assert out.data["defaults"]["norm"] == {"epsilon": 1e-5, "momentum": 0.9}


@pytest.mark.parametrize("override, path", [
    ("depth", ()),                                    # missing '='
    ("stages.5.blocks=2", ("stages", "5")),           # index out of range
    ("stages.x=2", ("stages", "x")),                  # not an index
    ("depth.x=2", ("depth",)),                        # descending into a scalar
    ("stages.0.widths.0=1", ("stages", 0, "widths")),  # a missing list cannot be made
    ("a..b=1", ()),                                   # empty segment
    ("depth=!!python/object:os.system x", ()),        # unsafe value
    ("depth=[1", ()),                                 # unreadable value
])
def test_bad_overrides(override: str, path: tuple) -> None:
    out = apply_overrides(load_text(SPEC), [override, "depth=56"])
    diag = only(out, "RS011")
    assert override in diag.message and diag.key_path == path
    assert diag.file == f"--set {override}"


def test_override_creates_missing_sections() -> None:
    out = apply_overrides(load_text(SPEC.replace("defaults:\n  norm:\n    epsilon: 1.0e-5\n", ""), filename="net.yaml"),
                          ["defaults.norm.epsilon=1e-5", "training.optimizer.learning_rate=0.05", "training.epochs=2"])
    assert out.ok, out.diagnostics
    assert out.data["defaults"] == {"norm": {"epsilon": 1e-5}}
    assert out.data["training"] == {"optimizer": {"learning_rate": 0.05}, "epochs": 2}
    # anything inside a created section came from the command line
    diag = out.source.attach(Diagnostic("RS101", "unknown", key_path=("defaults", "norm", "momentum")))
    assert diag.file == "--set defaults.norm.epsilon=1e-5" and diag.line is None


def test_override_fills_an_empty_section() -> None:
    out = apply_overrides(load_text("version: 1\ntraining:\n"), ["training.epochs=3"])
    assert out.ok and out.data["training"] == {"epochs": 3}


def test_override_into_a_scalar_names_its_type_in_words() -> None:
    diag = only(apply_overrides(load_text(SPEC), ["depth.x=2"]), "RS011")
    assert "'depth' is an integer, not a mapping or list" in diag.message


def test_overrides_on_failed_document_are_not_applied() -> None:
    doc = load_text("a: 1\na: 2\n")
    assert apply_overrides(doc, ["a=3"]) is doc


def test_pure_python_parser_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = load_text(SPEC)
    monkeypatch.setattr(yaml_events, "_Parser", yaml.SafeLoader)
    slow = load_text(SPEC)
    assert slow.data == fast.data
    assert slow.source.key_positions == fast.source.key_positions
    assert slow.source.value_positions == fast.source.value_positions


# -- speed ------------------------------------------------------------------------------------

def big_spec(stages: int) -> str:
    parts = ["version: 1", "name: big", "depth: 1000", "defaults:", "  norm: {kind: batch, epsilon: 1.0e-5}",
             "stages:"]
    for i in range(stages):
        parts += [f"  - name: stage{i}", "    blocks: 3", f"    width: {16 * (i + 1)}", "    stride: 2",
                  "    shortcut: projection", "    layers:", "      - {kind: conv, kernel: 3, bias: false}",
                  "      - {kind: norm, momentum: 0.9}", "      - kind: relu", "    extra: &x" + str(i) + " [1, 2, 3]"]
    return "\n".join(parts) + "\n"


def test_large_spec_loads_with_every_position() -> None:
    # Load speed is measured in benchmarks/bench_validate.py, not asserted here.
    text = big_spec(150)
    assert len(text.splitlines()) >= 1500
    doc = load_text(text)
    assert doc.ok and len(doc.data["stages"]) == 150
    assert doc.source.locate(("stages", 149)) != (None, None)


@pytest.mark.parametrize("odd", ["\x7f", "\x85\x9f", "\u2028", "\ufffe"])
def test_json_strings_yaml_finds_unprintable_keep_their_positions(odd: str) -> None:
    """json accepts DEL, C1 controls and U+FFFE raw in a string; the YAML pass that finds
    positions refuses them as unprintable, which used to leave every diagnostic without a line
    (found by tests/fuzz/test_mutations.py)."""
    text = ('{\n "version": 1,\n "input": {"height": 8, "width": 8, "channels": 1},\n "classes": 2,\n'
            ' "stages": [{"block": "basic", "filters": 4,\n   "squeeze_excite": {"reducti' + odd + 'n": 1}}],\n'
            ' "head": {}\n}\n')  # fmt: skip
    (problem,) = pipeline.validate(text.encode("utf-8", "surrogatepass"), filename="spec.json").diagnostics
    assert problem.code == "RS101" and (problem.line, problem.column) == (6, 23), problem
