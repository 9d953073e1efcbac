"""Every command's failure is a message (issue 15): outputs that cannot be written, closed
pipes, control characters in names, unknown backends and unexpected errors. Each case runs the
CLI and asserts the exit status (1 for errors, 2 for usage, the same in every command), one
``error:`` line naming the problem, no traceback, and nothing created or changed outside the
target; the exit-status table is ``resnet_spec/cli/common.py`` ``EXIT_STATUSES`` (README)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from model_file_helpers import TINY, refused, run_cli, snapshot

from resnet_spec.cli import main
from resnet_spec.cli.common import EXIT_BROKEN_PIPE, EXIT_INVALID, EXIT_USAGE

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A spec, a run-less folder and (built once, torch) a model file to convert."""
    folder = tmp_path_factory.mktemp("inputs")
    spec = folder / "tiny.json"
    spec.write_text(json.dumps(TINY))
    return {"spec": spec, "folder": folder}


@pytest.fixture(scope="module")
def model_pt(inputs) -> Path:
    pytest.importorskip("torch")
    path = inputs["folder"] / "tiny.pt"
    assert main(["compile", str(inputs["spec"]), "--backend", "torch", "-o", str(path)]) == 0
    return path


# ---------------------------------------------------------------------- outputs that cannot be written

Command = Callable[[dict[str, Path], str], list[str]]
COMMANDS: dict[str, tuple[str, Command]] = {
    "compile_torch": (".pt", lambda i, out: ["compile", str(i["spec"]), "--backend", "torch", "-o", out]),
    "compile_keras": (".keras", lambda i, out: ["compile", str(i["spec"]), "--backend", "keras", "-o", out]),
    "convert": (".pt", lambda i, out: ["convert", str(i["model"]), "--to", "torch", "-o", out]),
    "import_weights": (".pt", lambda i, out: ["import-weights", str(i["spec"]), str(i["model"]), "-o", out]),
    "diagram": (".svg", lambda i, out: ["diagram", str(i["spec"]), "-o", out]),
    "compare": (".png", lambda i, out: ["compare", str(i["folder"]), "-o", out]),
}


def _directory(tmp: Path, suffix: str) -> str:
    (tmp / f"out{suffix}").mkdir()
    return str(tmp / f"out{suffix}")


def _missing_parent(tmp: Path, suffix: str) -> str:
    return str(tmp / "missing" / "sub" / f"out{suffix}")


def _parent_is_a_file(tmp: Path, suffix: str) -> str:
    (tmp / "afile").write_text("keep me")
    return str(tmp / "afile" / f"out{suffix}")


def _fifo(tmp: Path, suffix: str) -> str:
    os.mkfifo(tmp / f"out{suffix}")
    return str(tmp / f"out{suffix}")


def _existing(tmp: Path, suffix: str) -> str:
    (tmp / f"out{suffix}").write_text("a user's own file")
    return str(tmp / f"out{suffix}")


def _read_only(tmp: Path, suffix: str) -> str:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; /sys covers an unwritable folder")
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    return str(tmp / "ro" / f"out{suffix}")


OUTPUTS: dict[str, tuple[Callable[[Path, str], str], str]] = {
    "a_directory": (_directory, r"is a (directory|folder)"),
    "proc": (lambda tmp, suffix: f"/proc/x{suffix}", r"cannot write in /proc"),
    "sys_unwritable": (lambda tmp, suffix: f"/sys/x{suffix}", r"cannot write in /sys \(Permission denied\)"),
    "missing_parent": (_missing_parent, r"the folder .*missing/sub does not exist; create it first"),
    "parent_is_a_file": (_parent_is_a_file, r"afile is not a folder"),
    "fifo": (_fifo, r"exists and is not a regular file"),
    "existing_without_force": (_existing, r"exists; choose another"),
    "read_only_folder": (_read_only, r"cannot write in .*ro \(Permission denied\)"),
}


PICTURES = ("diagram", "compare")  # pictures are replaced without --force: an existing one is no error
CASES = [(c, o) for c in sorted(COMMANDS) for o in sorted(OUTPUTS) if not (c in PICTURES and o == "existing_without_force")]


@pytest.mark.parametrize(("command", "output"), CASES)
def test_unwritable_output_is_a_usage_error(command, output, inputs, tmp_path, capsys, request):
    suffix, argv = COMMANDS[command]
    given = dict(inputs)
    if command in ("convert", "import_weights"):
        given["model"] = request.getfixturevalue("model_pt")
    make, match = OUTPUTS[output]
    target = make(tmp_path, suffix)
    before = snapshot(inputs["folder"])
    refused(capsys, argv(given, target), match, [tmp_path], status=EXIT_USAGE)
    assert snapshot(inputs["folder"]) == before
    assert not Path(f"/proc/x{suffix}").exists() and not Path(f"/sys/x{suffix}").exists()


# ---------------------------------------------------------------------- the same exit status in every command


def _unknown_suffix(tmp: Path) -> str:
    (tmp / "model.bin").write_bytes(b"x")
    return str(tmp / "model.bin")


USAGE: dict[str, tuple[Callable[[dict[str, Path], Path], list[str]], str]] = {
    "compile_unknown_backend": (lambda i, t: ["compile", str(i["spec"]), "--backend", "nope", "-o", str(t / "x.pt")],
                                r"unknown backend 'nope'"),
    "load_unknown_backend": (lambda i, t: ["load", _unknown_suffix(t), "--backend", "nope"], r"unknown backend 'nope'"),
    "load_unknown_suffix": (lambda i, t: ["load", _unknown_suffix(t)], r"no installed backend saves '.bin' files"),
    "load_missing_file": (lambda i, t: ["load", str(t / "none.pt")], r"none.pt: no such file"),
    "convert_unknown_target": (lambda i, t: ["convert", _unknown_suffix(t), "--to", "nope", "-o", str(t / "x.pt")],
                               r"unknown backend 'nope'"),
    "convert_unknown_source_suffix": (lambda i, t: ["convert", _unknown_suffix(t), "--to", "torch", "-o", str(t / "x.pt")],
                                      r"no installed backend saves '.bin' files"),
    "convert_missing_file": (lambda i, t: ["convert", str(t / "none.pt"), "--to", "torch", "-o", str(t / "x.pt")],
                             r"no such file"),
    "import_weights_unknown_output_suffix": (lambda i, t: ["import-weights", str(i["spec"]), _unknown_suffix(t), "-o", str(t / "x.bin2")],
                                             r"no installed backend saves '.bin2' files"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_errors_exit_2_in_every_command(case, inputs, tmp_path, capsys):
    argv, match = USAGE[case]
    refused(capsys, argv(inputs, tmp_path), match, [tmp_path], status=EXIT_USAGE)


def test_a_spec_with_errors_exits_1_in_compile(tmp_path, capsys):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({**TINY, "classes": "many"}))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["compile", str(spec), "--backend", "torch", "-o", str(tmp_path / "x.pt")])
    assert code == EXIT_INVALID and "RS1" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.torch
def test_a_backend_refusal_in_compile_exits_1(inputs, tmp_path, capsys, monkeypatch):
    """compile used to exit 2 for a backend error and print a traceback for a refused save."""
    from resnet_spec.backends import BackendError, get_backend

    backend = type(get_backend("torch"))

    def refuse(self, *args, **kwargs):
        raise BackendError("the spec cannot be stored as JSON data: test")

    monkeypatch.setattr(backend, "save", refuse)
    refused(capsys, ["compile", str(inputs["spec"]), "--backend", "torch", "-o", str(tmp_path / "x.pt")],
            r"cannot be stored as JSON data", [tmp_path], status=EXIT_INVALID)  # fmt: skip


@pytest.mark.torch
def test_a_write_failing_midway_exits_1(inputs, tmp_path, capsys, monkeypatch):
    from resnet_spec.backends import get_backend

    backend = type(get_backend("torch"))

    def disk_full(self, model, arch, data, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(backend, "save", disk_full)
    refused(capsys, ["compile", str(inputs["spec"]), "--backend", "torch", "-o", str(tmp_path / "x.pt")],
            r"x.pt: No space left on device", [tmp_path], status=EXIT_INVALID)  # fmt: skip


def test_an_unexpected_exception_is_one_line_and_verbose_shows_it(inputs, capsys, monkeypatch):
    from resnet_spec.cli import summary

    def broken(args):
        raise RuntimeError("something no test expected")

    monkeypatch.setattr(summary, "run", broken)
    line = refused(capsys, ["summary", str(inputs["spec"])], r"unexpected RuntimeError: something no test expected \(a bug",
                   [inputs["folder"]], status=EXIT_INVALID)  # fmt: skip
    assert "--verbose" in line
    with pytest.raises(RuntimeError):
        main(["summary", str(inputs["spec"]), "--verbose"])


# ---------------------------------------------------------------------- closed pipes


PIPED: dict[str, Callable[[dict[str, Path]], list[str]]] = {
    "validate": lambda i: ["validate", str(REPO / "examples")],
    "summary": lambda i: ["summary", str(REPO / "examples" / "resnet50.yaml")],
    "schema": lambda i: ["schema"],
    "codes": lambda i: ["codes"],
    "backends": lambda i: ["backends"],
    "diff": lambda i: ["diff", str(REPO / "examples" / "resnet20_cifar10.yaml"), str(REPO / "examples" / "resnet56_cifar10.yaml")],
    "validate_json": lambda i: ["validate", str(i["spec"]), "--format", "json"],
    "load": lambda i: ["load", str(i["model"])],
    "load_json": lambda i: ["load", str(i["model"]), "--format", "json"],
    "codes_markdown": lambda i: ["codes", "--markdown"],
    "summary_json": lambda i: ["summary", str(i["spec"]), "--format", "json"],
    "compile": lambda i: ["compile", str(i["spec"]), "--backend", "torch", "-o", str(i["out"]), "--force"],
}


@pytest.mark.parametrize("command", sorted(PIPED))
def test_closed_pipe_is_quiet_exit_141(command, inputs, tmp_path, request):
    """The reader is gone before the command writes (`resnet-spec codes | head -0`): exit 141,
    nothing on standard error (no BrokenPipeError traceback, no 'Exception ignored')."""
    given = {**inputs, "out": tmp_path / "piped.pt"}
    if command.startswith("load"):
        given["model"] = request.getfixturevalue("model_pt")
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "backends")])}
    try:
        run = subprocess.run([sys.executable, "-m", "resnet_spec.cli", *PIPED[command](given)], stdout=write,
                             stderr=subprocess.PIPE, text=True, env=env, timeout=300, check=False)  # fmt: skip
    finally:
        os.close(write)
    assert run.returncode == EXIT_BROKEN_PIPE, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr[-2000:]
    if command == "compile":  # the file is written before the report that nobody reads
        assert (tmp_path / "piped.pt").is_file()


# ---------------------------------------------------------------------- control characters


EVIL = "evil\x1b[31m\u202e\n"


def test_control_characters_in_a_valid_spec_name_are_escaped(inputs, tmp_path, capsys):
    spec = tmp_path / f"{EVIL}.json"
    spec.write_text(json.dumps(TINY))
    code, out, err = run_cli(capsys, ["validate", str(spec)])
    assert code == 0, err
    assert "evil\\x1b[31m\\u202e\\n.json: ok" in out
    assert "\x1b" not in out + err and "\u202e" not in out + err and out.count("\n") == 1


def test_control_characters_in_an_invalid_spec_name_are_escaped(tmp_path, capsys):
    spec = tmp_path / f"{EVIL}.json"
    spec.write_text(json.dumps({**TINY, "classes": "many"}))
    code, out, err = run_cli(capsys, ["validate", str(spec)])
    assert code == EXIT_INVALID
    assert "evil\\x1b[31m\\u202e\\n.json" in out and "\x1b" not in out + err and "\u202e" not in out + err
    assert not any(line.startswith(".json") for line in out.splitlines())  # the newline forged no line


def test_control_characters_in_summary_headers_are_escaped(inputs, tmp_path, capsys):
    spec = tmp_path / f"{EVIL}.json"
    spec.write_text(json.dumps(TINY))
    code, out, err = run_cli(capsys, ["summary", str(spec), str(inputs["spec"])])
    assert code == 0, err
    assert "== " + str(tmp_path) + "/evil\\x1b[31m\\u202e\\n.json" in out and "\x1b" not in out


def test_control_characters_in_a_missing_model_name_are_escaped(tmp_path, capsys):
    line = refused(capsys, ["load", str(tmp_path / "bad\x1b]0;title\x07.pt")], r"bad\\x1b\]0;title\\x07.pt: no such file",
                   [tmp_path], status=EXIT_USAGE)  # fmt: skip
    assert "\x07" not in line


def test_control_characters_in_a_spec_key_are_escaped(tmp_path, capsys):
    spec = tmp_path / "keys.json"
    spec.write_text(json.dumps({**TINY, "cla\u202esses\u2028x": 1}))
    code, out, err = run_cli(capsys, ["validate", str(spec)])
    assert code == EXIT_INVALID
    assert "RS101" in out and "\u202e" not in out + err and "\u2028" not in out + err


@pytest.mark.torch
def test_control_characters_in_an_output_name_are_escaped_and_the_file_written(inputs, tmp_path, capsys):
    out_path = tmp_path / "out\x1b[2J.pt"
    code, out, err = run_cli(capsys, ["compile", str(inputs["spec"]), "--backend", "torch", "-o", str(out_path)])
    assert code == 0, err
    assert out_path.is_file() and "out\\x1b[2J.pt" in out and "\x1b" not in out
