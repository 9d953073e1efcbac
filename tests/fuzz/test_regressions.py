"""Replays every spec in tests/regressions/: what fuzzing (or a review prompted by it) found.

Each file is a spec with a comment header::

    # regression: what went wrong
    # found-by: which property / strategy found it
    # expect: valid | RS205 | RS205 or RS207     (alternatives; "valid" means both backends build it)
    # message: text that some diagnostic's message must contain            (optional, repeatable)
    # forbid: text that no diagnostic's message may contain                 (optional, repeatable)
    # open: why it still fails and the proposed fix                         (optional)
    # replay: mapping    validate the parsed document as a mapping (the Python API) (optional)
    # replay: run-dir    validate the spec.yaml that a training run directory writes for it (optional)
    # big: KEY N         first set the top-level KEY to the integer 10**N         (optional)
    # nest: KEY N        then wrap the top-level KEY's value in N lists: [[[value]]]  (optional)
    # hostile: ...       too slow to replay here; tests/test_hostile_files.py runs it under a time limit

JSON specs (``NAME.json``) keep the same header in ``NAME.json.header``.

A file with an ``# open:`` line is an xfail(strict=True): it must fail until the bug is fixed,
and the fix turns it into an unexpected pass, so whoever fixes it deletes the line (which also
lets the fuzz strategies generate the trigger again, see ``strategies.is_open``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import resnet_spec

from . import helpers

DIRECTORY = Path(__file__).resolve().parents[1] / "regressions"
REGRESSIONS = sorted([*DIRECTORY.glob("*.yaml"), *DIRECTORY.glob("*.json")])


def header(path: Path) -> dict[str, list[str]]:
    """The comment header; a JSON spec (JSON has no comments) keeps it in NAME.json.header."""
    source = path.with_name(path.name + ".header") if path.suffix == ".json" else path
    fields: dict[str, list[str]] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    return fields


def _cases() -> list[object]:
    cases = []
    for path in REGRESSIONS:
        fields = header(path)
        marks = []
        if "open" in fields:
            marks.append(pytest.mark.xfail(strict=True, reason=fields["open"][0]))
        cases.append(pytest.param(path, fields, marks=marks, id=path.stem))
    return cases


def test_every_regression_has_a_header() -> None:
    assert REGRESSIONS, "tests/regressions/ is empty"
    for path in REGRESSIONS:
        fields = header(path)
        assert {"regression", "found-by", "expect"} <= set(fields), path.name


@pytest.mark.parametrize(("path", "fields"), _cases())
def test_regression(path: Path, fields: dict[str, list[str]], tmp_path: Path) -> None:
    if "hostile" in fields:
        pytest.skip(f"replayed by tests/test_hostile_files.py: {fields['hostile'][0]}")
    replay = fields.get("replay", [""])[0]
    as_mapping = replay == "mapping"
    if replay == "run-dir":  # what `train` writes and `resume` / `evaluate` read back
        from resnet_spec.training.run_dir import RunDir

        RunDir(tmp_path, tensorboard=False).write_spec(yaml.safe_load(path.read_text(encoding="utf-8")))
        result = resnet_spec.validate(tmp_path / "spec.yaml")
    elif as_mapping:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # aliases become shared references
        for big in fields.get("big", []):
            key, digits = big.split()
            data[key] = 10 ** int(digits)
        for nest in fields.get("nest", []):
            key, depth = nest.split()
            for _ in range(int(depth)):
                data[key] = [data[key]]
        result = resnet_spec.validate(data)
    else:
        result = resnet_spec.validate(path)  # a path: the file is read as the CLI reads it
    for d in result.diagnostics:
        helpers.check_diagnostic(d, from_text=not as_mapping)
    allowed = [a.strip() for a in fields["expect"][0].split(" or ")]
    codes = {d.code for d in result.report.errors}
    messages = [d.message for d in result.diagnostics]
    if result.ok:
        assert "valid" in allowed, f"accepted, expected {allowed}"
        arch = result.architecture
        for name, module in (("torch", "torch"), ("keras", "tensorflow")):
            pytest.importorskip(module)
            helpers.check_backend(name, arch)
    else:
        assert codes & set(allowed), f"got {sorted(codes)}: {messages}; expected {allowed}"
    for text in fields.get("message", []):
        assert any(text.lower() in m.lower() for m in messages), f"no message mentions {text!r}: {messages}"
    for text in fields.get("forbid", []):
        assert not any(text in m for m in messages), f"a message contains {text!r}: {messages}"
