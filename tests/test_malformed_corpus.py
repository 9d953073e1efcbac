"""The malformed-spec corpus: every file is refused with the code and line its header names
(`# expect: RS201 line 12`), and the full compiler-style output equals its golden file.

Regenerate golden files after an intended message change with
``RESNET_SPEC_UPDATE_GOLDEN=1 pytest tests/test_malformed_corpus.py`` and review the diff."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_spec.cli import main

CORPUS = Path(__file__).parent / "malformed"
FILES = sorted(CORPUS.glob("*.yaml"))
UPDATE = os.environ.get("RESNET_SPEC_UPDATE_GOLDEN") == "1"


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 40


def _expectation(path: Path) -> tuple[str, int]:
    match = re.match(r"# expect: (RS\d{3}) line (\d+)", path.read_text(encoding="utf-8", errors="replace"))
    assert match, f"{path.name} lacks its '# expect: CODE line N' header"
    return match.group(1), int(match.group(2))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_refused_with_code_and_line(path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = _expectation(path)
    rel = str(path.relative_to(repo_root))
    assert main(["validate", "--format", "json", rel]) == 1
    diagnostics = json.loads(capsys.readouterr().out)[0]["diagnostics"]
    assert (code, line) in {(d["code"], d["line"]) for d in diagnostics}
    assert all(d["file"] == rel and d["message"] for d in diagnostics)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_text_output_matches_golden(path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path.relative_to(repo_root))]) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    golden = path.with_suffix(".expected")
    if UPDATE or not golden.exists():
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8")


def test_whole_corpus_through_the_real_command(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_spec.cli", "validate", *[str(p.relative_to(repo_root)) for p in FILES]],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.count(": error RS") >= len(FILES)
