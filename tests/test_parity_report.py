"""What parity reports: vacuous checks, the complete JSON form, JUnit XML (read back with
junitparser), and the command's exit statuses. The report tests build reports by hand (no
framework); the command tests run the tiny spec in both backends."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import resnet_spec
from resnet_spec import parity
from resnet_spec.cli import main
from resnet_spec.parity import Difference, ParityReport, junit_xml, write_junit

junitparser = pytest.importorskip("junitparser")

SPECS = Path(__file__).resolve().parent / "parity_specs"
TINY, ONE_CLASS = SPECS / "tiny.yaml", SPECS / "one_class.yaml"


def row(check: str, node: str, value: float, *, tensor: str = "output", magnitude: float = 1.0,
        limit: float = 1e-4) -> Difference:  # fmt: skip
    return Difference(check, node, tensor, value, value, limit, "rel", magnitude)


def report(rows: list[Difference], **extra: Any) -> ParityReport:
    """A report of ``rows``; ``checks_run`` (default: the checks that have rows) adds empty checks."""
    return ParityReport(("keras", "torch"), 0, 2, differences=rows, input_node="input", **extra)


# --------------------------------------------------------------------------- vacuous checks


def test_a_check_of_all_zero_tensors_is_vacuous_and_fails() -> None:
    r = report([row("eval", "input", 0.0, magnitude=3.0), row("eval", "stem.conv1", 1e-9),
                row("gradients", "stem.conv1", 0.0, tensor="kernel", magnitude=0.0),
                row("gradients", "head.classifier", 0.0, tensor="bias", magnitude=0.0)])  # fmt: skip
    assert r.vacuous("gradients") and not r.vacuous("eval")
    assert r.check_ok("eval") and not r.check_ok("gradients") and not r.ok
    assert r.first_divergence() is None  # no row is over its limit: the check proves nothing
    text = parity.render_text(r)
    assert "gradients compared nothing" in text and "same function" not in text
    allowed = report(r.differences, allow_vacuous=True)
    assert allowed.ok and "(vacuous, allowed)" in parity.render_text(allowed)


def test_a_check_with_nothing_to_compare_is_vacuous() -> None:
    """norm_stats of a network without batch norms; the input row alone proves nothing either."""
    r = report([row("eval", "input", 0.0, magnitude=3.0)], checks_run=list(parity.CHECKS))
    assert r.vacuous("norm_stats") and r.vacuous("eval") and r.worst("norm_stats") is None
    assert any(
        line.startswith("norm_stats") and "(nothing to compare)" in line for line in parity.render_text(r).splitlines()
    )
    assert r.to_json()["checks"]["norm_stats"] == {"ok": False, "vacuous": True, "precision": "float64", "rows": 0,
                                                  "failing": 0, "limits": [], "worst": None}  # fmt: skip


def test_one_zero_tensor_among_others_is_not_vacuous() -> None:
    """A conv bias before a batch norm has an exact gradient of zero: normal, not vacuous."""
    r = report([row("gradients", "stem.conv1", 0.0, tensor="bias", magnitude=0.0),
                row("gradients", "stem.conv1", 1e-12, tensor="kernel")])  # fmt: skip
    assert not r.vacuous("gradients") and r.check_ok("gradients")


# --------------------------------------------------------------------------- JSON


def test_json_is_strict_and_complete() -> None:
    r = report([row("eval", "input", 0.0), row("eval", "stem.conv1", math.inf),
                row("gradients", "stem.conv1", 2e-5, tensor="kernel")], precision="float32",
               checks_run=list(parity.CHECKS))  # fmt: skip
    r.decided_in["gradients"] = "float64"
    r.float32_worst["gradients"] = row("gradients", "stem.conv1", 3e-2, tensor="kernel")
    r.hazards = parity.hazards(resnet_spec.build_architecture(TINY), 2, {"stem.act1": 2})
    text = json.dumps(r.to_json(), allow_nan=False)  # raises on NaN / Infinity
    out = json.loads(text)
    assert out["format"] == "resnet-spec-parity/2" and out["ok"] is False
    assert out["first_divergence"]["node"] == "stem.conv1" and out["first_divergence"]["max_abs"] == "inf"
    assert [d["node"] for d in out["differences"]] == ["input", "stem.conv1", "stem.conv1"]
    assert set(out["differences"][0]) == {"check", "node", "tensor", "max_abs", "max_rel", "limit", "measure",
                                          "magnitude", "ok"}  # fmt: skip
    gradients = out["checks"]["gradients"]
    assert gradients["precision"] == "float64" and gradients["float32_worst"]["max_rel"] == 3e-2
    assert [h["kind"] for h in out["hazards"]] == ["kink_flips", "small_norms"]
    assert out["hazards"][0]["count"] == 2 and out["hazards"][1]["least"] == 32
    assert gradients["decided_because"] == [h["text"] for h in out["hazards"]]
    assert set(out["checks"]) == set(parity.CHECKS)
    for key in ("backends", "seed", "steps", "batch_size", "precision", "allow_vacuous", "settings", "kink_flips",
                "later_kink_flips", "calibrated", "notes", "losses", "timings"):  # fmt: skip
        assert key in out, key


# --------------------------------------------------------------------------- JUnit


def test_junit_has_one_case_per_check_and_parses(tmp_path: Path) -> None:
    failing = report([row("eval", "input", 0.0), row("eval", "stem.conv1", 3e-3),
                      row("gradients", "stem.conv1", 0.0, tensor="kernel", magnitude=0.0)])  # fmt: skip
    passing = report([row(check, "stem.conv1", 1e-9) for check in parity.CHECKS])
    path = tmp_path / "parity.xml"
    write_junit(path, [("specs/a.yaml", failing), ("specs/b.yaml", passing), ("specs/c.yaml", "RS201: bad")])
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"parity specs/a.yaml", "parity specs/b.yaml", "parity specs/c.yaml"}
    cases = {case.name: case for case in suites["parity specs/a.yaml"]}
    assert list(cases) == ["eval", "gradients"]
    assert isinstance(cases["eval"].result[0], junitparser.Failure)
    assert "stem.conv1 output: max abs 0.003" in cases["eval"].result[0].message
    assert "gradients compared nothing" in cases["gradients"].result[0].message  # vacuous: a failure
    assert all(case.is_passed for case in suites["parity specs/b.yaml"]) and suites["parity specs/b.yaml"].failures == 0
    assert [case.name for case in suites["parity specs/b.yaml"]] == list(parity.CHECKS)
    assert isinstance(next(iter(suites["parity specs/c.yaml"])).result[0], junitparser.Error)
    assert (xml.tests, xml.failures, xml.errors) == (8, 2, 1)
    allowed = report(failing.differences[:1] + failing.differences[2:], allow_vacuous=True)
    cases = {c.name: c for c in next(iter(junitparser.JUnitXml.fromstring(junit_xml([("a", allowed)]))))}
    assert isinstance(cases["gradients"].result[0], junitparser.Skipped)


def test_junit_never_replaces_a_file_it_did_not_write(tmp_path: Path) -> None:
    theirs = tmp_path / "results.xml"
    theirs.write_text("<testsuites name='pytest'/>")
    with pytest.raises(FileExistsError, match="not a resnet-spec JUnit report"):
        write_junit(theirs, [("a", report([]))])
    assert theirs.read_text() == "<testsuites name='pytest'/>"
    ours = tmp_path / "parity.xml"
    write_junit(ours, [("a", report([]))])
    write_junit(ours, [("b", report([]))])  # its own file: replaced
    assert "parity b" in ours.read_text()


# --------------------------------------------------------------------------- the command


@pytest.mark.keras
@pytest.mark.torch
def test_command_exit_statuses_json_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    xml = tmp_path / "parity.xml"
    assert main(["parity", str(TINY), "--steps", "1", "--format", "json", "--junit-xml", str(xml)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["spec"] == str(TINY) and len(out["differences"]) > 40
    assert {d["check"] for d in out["differences"]} == set(parity.CHECKS)
    assert junitparser.JUnitXml.fromfile(str(xml)).tests == 5

    assert main(["parity", str(ONE_CLASS), "--steps", "1", "--junit-xml", str(xml)]) == 1  # vacuous gradients
    assert "gradients compared nothing" in capsys.readouterr().out
    assert junitparser.JUnitXml.fromfile(str(xml)).failures == 1
    assert main(["parity", str(ONE_CLASS), "--steps", "1", "--allow-vacuous"]) == 0
    capsys.readouterr()


def test_command_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", str(TINY), "--backends", "keras"]) == 2
    assert main(["parity", str(TINY), "--backends", "keras,nonesuch"]) == 2
    assert "unknown backend 'nonesuch'" in capsys.readouterr().err
    foreign = tmp_path / "results.xml"
    foreign.write_text("<testsuites/>")
    assert main(["parity", str(TINY), "--junit-xml", str(foreign)]) == 2  # refused before any work
    assert "not a resnet-spec JUnit report" in capsys.readouterr().err
    flat = {"version": 1, "input": {"height": 1, "width": 1, "channels": 3}, "classes": 3,
            "stem": [{"type": "conv", "filters": 4, "kernel_size": 1}, {"type": "norm"}],
            "stages": [{"block": "basic", "blocks": 1, "filters": 4}]}  # fmt: skip
    spec = tmp_path / "flat.json"
    spec.write_text(json.dumps(flat))
    # A 1x1 map with batch 1: each norm's statistics over one value (variance 0).
    assert main(["parity", str(spec), "--batch-size", "1"]) == 2
    assert "over a single value" in capsys.readouterr().err


def test_command_invalid_spec_exits_1_and_reports_in_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ninput: {height: 8, width: 8, channels: 3}\nclasses: 5\nstages: []\n")
    xml = tmp_path / "parity.xml"
    assert main(["parity", str(bad), "--junit-xml", str(xml)]) == 1
    capsys.readouterr()
    parsed = junitparser.JUnitXml.fromfile(str(xml))
    assert parsed.errors == 1 and "does not validate" in next(iter(next(iter(parsed)))).result[0].message


def test_the_api_and_the_plugin_import_no_framework() -> None:
    """The plugin loads in every pytest session of an environment where resnet-spec is installed:
    it, the testing API and the parity package must not import a framework until a test runs."""
    import subprocess
    import sys

    probe = ("import sys, resnet_spec.testing, resnet_spec.pytest_plugin, resnet_spec.parity.command; "
             "print(sorted(m for m in ('tensorflow', 'torch', 'keras', 'jax') if m in sys.modules))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_pytest11_entry_point_names_the_plugin_module() -> None:
    """Named as its module, so that `-p resnet_spec.pytest_plugin` (the tests here, users without
    an install) is a no-op where the entry point already loaded it (checked by hand with
    `pip install --target`: both ways run, no double registration)."""
    import importlib
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"resnet_spec.pytest_plugin": "resnet_spec.pytest_plugin"}
    plugin = importlib.import_module("resnet_spec.pytest_plugin")
    assert callable(plugin.pytest_addoption) and callable(plugin.pytest_collect_file)
