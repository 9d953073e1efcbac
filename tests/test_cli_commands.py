"""The framework-free commands as a user runs them: ``--format json`` on every reporting
command, ``summary`` of several files, ``validate DIR``, ``--set`` creating sections, messages
in the user's words (no Python class names, a tab called a tab, an unclosed bracket found where
it opened), and ``--verbose`` before or after the command."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_spec import spec as spec_module
from resnet_spec import validate
from resnet_spec.cli import main
from resnet_spec.diagnostics import CODES
from resnet_spec.loader import dump_yaml, load_file

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
R20 = EXAMPLES / "resnet20_cifar10.yaml"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- --format json ------------------------------------------------------------------------------

def test_codes_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "codes", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["code"] for r in rows] == list(CODES)
    assert rows[0] == {"code": "RS001", "title": CODES["RS001"].title, "explanation": CODES["RS001"].explanation}


def test_backends_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "backends", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and {"keras", "torch"} <= set(rows)
    assert rows["torch"]["entry_point"] == "resnet_spec_torch:TorchBackend"
    assert set(rows["torch"]) == {"name", "entry_point", "distribution", "ready", "problem", "engine"}
    assert rows["torch"]["engine"] is None  # only Keras runs on more than one engine
    if rows["keras"]["ready"]:  # tests/test_keras_jax.py sees "jax" under KERAS_BACKEND=jax
        assert rows["keras"]["engine"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert rows["torch"]["ready"] == (rows["torch"]["problem"] is None)


# -- summary of several files ---------------------------------------------------------------------

def test_summary_of_several_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(EXAMPLES / "resnet18.yaml"), str(EXAMPLES / "resnet34.yaml")]
    code, out, _ = run_cli(capsys, "summary", *files)
    assert code == 0 and out.count("== ") == 2 and "resnet18" in out and "resnet34" in out
    assert "parameters: 11,689,512 trainable" not in out or out.index("== " + files[0]) < out.index("== " + files[1])
    code, out, _ = run_cli(capsys, "summary", *files, "--format", "json")
    documents = json.loads(out)
    assert [d["file"] for d in documents] == files
    assert documents[0]["params_total"] != documents[1]["params_total"]


def test_summary_reports_every_bad_file_and_still_sums_the_good(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(REPO / "tests/malformed/identity_shortcut_stride.yaml")
    code, out, err = run_cli(capsys, "summary", str(R20), bad)
    assert code == 1 and "== " in out and "RS201" in err


# -- validate DIR ---------------------------------------------------------------------------------

def test_validate_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / ".hidden").mkdir()
    shutil.copy(R20, tmp_path / "a.yaml")
    shutil.copy(EXAMPLES / "resnet18.yaml", tmp_path / "nested" / "b.yml")
    (tmp_path / "c.json").write_text(json.dumps(load_file(R20).data))
    (tmp_path / ".hidden" / "broken.yaml").write_text("not: [valid\n")
    (tmp_path / "notes.txt").write_text("not a spec")
    code, out, _ = run_cli(capsys, "validate", str(tmp_path))
    assert code == 0, out
    assert [line.split(":")[0] for line in out.splitlines()[:3]] == [
        str(tmp_path / "a.yaml"), str(tmp_path / "c.json"), str(tmp_path / "nested" / "b.yml")]
    assert out.splitlines()[-1] == "3 files: 3 valid, 0 with errors"
    shutil.copy(REPO / "tests/malformed/identity_shortcut_stride.yaml", tmp_path / "nested" / "bad.yaml")
    code, out, _ = run_cli(capsys, "validate", str(tmp_path), "--format", "json")
    assert code == 1 and [d["valid"] for d in json.loads(out)] == [True, True, True, False]


def test_validate_every_example_folder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "validate", "-q", str(EXAMPLES))
    count = len(list(EXAMPLES.glob("*.yaml")))
    assert code == 0 and out.strip() == f"{count} files: {count} valid, 0 with errors"


def test_validate_a_folder_without_specs_is_a_clear_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "readme.md").write_text("# nothing here")
    code, _, err = run_cli(capsys, "validate", str(tmp_path))
    assert code == 2 and err.strip() == f"error: {tmp_path} is a folder without spec files (*.yaml, *.yml or *.json)"


# -- --set creates missing sections -----------------------------------------------------------------

def test_set_creates_a_missing_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_file(R20).data
    del data["defaults"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(dump_yaml(data))
    code, out, _ = run_cli(capsys, "validate", str(plain), "--set", "defaults.norm.epsilon=2e-5", "--format", "json")
    (result,) = json.loads(out)
    assert code == 0 and result["valid"], result
    explicit = dict(data, defaults={"norm": {"epsilon": 2e-5}})
    assert result["hash"] == validate(explicit).architecture.hash != validate(data).architecture.hash


def test_a_bad_value_in_a_created_section_points_at_the_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_file(R20).data
    del data["defaults"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(dump_yaml(data))
    code, out, _ = run_cli(capsys, "validate", str(plain), "--set", "defaults.norm.epsilonn=1e-5")
    assert code == 1
    assert out.startswith("--set defaults.norm.epsilonn=1e-5: error RS101: unknown key `epsilonn`"), out
    assert "did you mean `epsilon`?" in out


# -- messages in the user's words -------------------------------------------------------------------

SPEC_CLASSES = sorted(n for n, o in vars(spec_module).items() if inspect.isclass(o) and o.__module__ == spec_module.__name__)
PYTHON_WORDS = re.compile(r"\b(" + "|".join(SPEC_CLASSES) + r"|None|True|False|NoneType|dict|int|float|str|bool)\b")


def _mutations() -> list[dict]:
    """resnet20's spec with each value in turn replaced by values of every wrong kind."""
    base = load_file(R20).data
    found = []
    stack: list[tuple[tuple, object]] = [((), base)]
    paths = []
    while stack:
        path, node = stack.pop()
        if path:
            paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack += [(path + (k,), v) for k, v in items]
    for path in paths:
        for bad in ("per_channel_mean", 3, 2.5, [1], {"x": 1}, None, True):
            data = copy.deepcopy(base)
            target = data
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = bad
            found.append(data)
    return found


def test_no_message_shows_a_python_class_name_or_literal(capsys: pytest.CaptureFixture[str]) -> None:
    texts = []
    for data in _mutations():
        texts += [f"{d.message} {d.hint or ''}" for d in validate(data).report]
    corpus = sorted((REPO / "tests" / "malformed").glob("*.yaml"))
    main(["validate", "--format", "json", *map(str, corpus)])
    texts += [f"{d['message']} {d['hint'] or ''}" for r in json.loads(capsys.readouterr().out) for d in r["diagnostics"]]
    assert len(texts) > 500
    # quoted text is the user's own (a key or value from the file), so only the rest is scanned
    leaks = sorted({t for t in texts if PYTHON_WORDS.search(re.sub(r"'[^']*'|`[^`]*`", "", t))})
    assert not leaks, leaks[:10]


def test_a_bare_string_where_a_mapping_goes_gets_the_mapping_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_file(R20).data
    data["training"]["preprocessing"] = "per_channel_mean"
    data["training"]["schedule"] = "cosine"
    spec = tmp_path / "s.yaml"
    spec.write_text(dump_yaml(data))
    code, out, _ = run_cli(capsys, "validate", str(spec))
    assert code == 1
    assert "training.preprocessing is 'per_channel_mean' (a string); expected a mapping" in out
    assert "hint: write `preprocessing: {mode: per_channel_mean}`" in out
    assert "hint: write `schedule: {kind: cosine}`" in out


@pytest.mark.parametrize(("text", "where", "words"), [
    ("version: 1\nstages:\n\t- {block: basic}\n", ":3:1: error RS003:", "a tab character"),
    ("version: 1\nclasses: 10\nstages: [\n  {block: basic},\n  {block: basic}\nhead: {}\n", ":3:9: error RS003:",
     "this list's `[` has no matching `]`"),
    ("version: 1\ninput: {height: 32, width: 32\nclasses: 10\n", ":2:8: error RS003:", "this mapping's `{` has no matching `}`"),
    ('version: 1\nname: "resnet\nclasses: 10\n', ":2:7: error RS003:", "this quoted string is never closed"),
], ids=["tab", "unclosed_list", "unclosed_mapping", "unclosed_quote"])
def test_yaml_mistakes_in_words_where_they_are(text: str, where: str, words: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    code, out, _ = run_cli(capsys, "validate", str(spec))
    first = out.splitlines()[0]
    assert code == 1 and first.startswith(str(spec) + where) and words in first, out


# -- global options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--verbose", "validate", str(R20)], ["validate", str(R20), "--verbose"],
                                  ["-v", "validate", str(R20)]])  # fmt: skip
def test_verbose_before_or_after_the_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and ": ok (" in out


def test_usage_errors_are_one_line_with_status_2(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    existing = tmp_path / "r20.pt"
    existing.write_text("mine")
    done = subprocess.run([sys.executable, "-m", "resnet_spec.cli", "compile", str(R20), "--backend", "torch",
                           "-o", str(existing)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2 and existing.read_text() == "mine"
    assert done.stderr.strip() == f"error: {existing} already exists; choose another output or pass --force to replace it"


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    command = f"'{sys.executable}' -m resnet_spec.cli summary examples/resnet152.yaml --nodes --format json | head -c 1"
    done = subprocess.run(["bash", "-c", f"{command}; exit ${{PIPESTATUS[0]}}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.stdout == "{" and done.stderr == "" and done.returncode in (0, 141)


FILTER_PROBE = r"""
import importlib.util, os, sys
from resnet_spec.cli.environment import quiet_frameworks
os.write(2, b"I0000 00:00:1.2   1 before.cc:1] not filtered: TensorFlow was not looked for yet\n")
with quiet_frameworks():
    importlib.util.find_spec("tensorflow")  # what a backend's check or an import does first
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796164747.359120   12533 port.cc:153] oneDNN custom operations are on.\n")
    os.write(2, b"E0000 00:00:1796165414.815293   18736 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
    os.write(2, b"E0000 00:00:1796165414.815293   18736 graph.cc:7] a real error\n")
    os.write(2, b"\rprogress 1/2")
    os.write(2, b"\rprogress 2/2\n")
    print("a Python warning", file=sys.stderr)
print("after the command", file=sys.stderr)
"""


def test_framework_noise_is_filtered_from_file_descriptor_2() -> None:
    done = subprocess.run([sys.executable, "-c", FILTER_PROBE], cwd=REPO, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode() == (  # bytes: text mode would turn the progress bar's \r into \n
        "I0000 00:00:1.2   1 before.cc:1] not filtered: TensorFlow was not looked for yet\n"
        "E0000 00:00:1796165414.815293   18736 graph.cc:7] a real error\n"
        "\rprogress 1/2\rprogress 2/2\na Python warning\nafter the command\n"
    )
