"""A parity report as JUnit XML, the format CI systems render (GitHub Actions reporters, GitLab,
Jenkins, Azure): one ``<testsuite>`` per spec, one ``<testcase>`` per check.

A check that fails is a ``<failure>`` whose message names the worst tensor against its limit and
whose text lists the failing rows; a vacuous check that is not allowed fails the same way; an
allowed vacuous check is ``<skipped>`` (it passed without proving anything). A spec that could
not be checked at all (it does not validate, a backend is missing) is one ``<error>`` case.
The whole text report is the suite's ``<system-out>``. Element and attribute names follow the
JUnit schema that Jenkins and junitparser read (``testsuites`` > ``testsuite`` > ``testcase``)."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from ..atomic import atomic_path
from .report import ParityReport, render_text

SUITES_NAME = "resnet-spec parity"


def junit_xml(reports: list[tuple[str, ParityReport | str]], *, seconds: float = 0.0) -> str:
    """``reports``: (spec name, report, or the error text for a spec that could not be checked)."""
    suites = ET.Element("testsuites", name=SUITES_NAME)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for spec, report in reports:
        suite = _suite(spec, report, seconds / max(len(reports), 1))
        suites.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set("time", f"{seconds:.3f}")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _suite(spec: str, report: ParityReport | str, seconds: float) -> ET.Element:
    suite = ET.Element("testsuite", name=f"parity {spec}", timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                       hostname=socket.gethostname(), time=f"{seconds:.3f}")  # fmt: skip
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if isinstance(report, str):
        case = ET.SubElement(suite, "testcase", classname=spec, name="parity", time=f"{seconds:.3f}")
        ET.SubElement(
            case, "error", message=report.splitlines()[0] if report else "error", type="ParityError"
        ).text = report
        counts.update(tests=1, errors=1)
    else:
        properties = ET.SubElement(suite, "properties")
        for key, value in (("backends", ",".join(report.backends)), ("precision", report.precision),
                           ("seed", report.seed), ("steps", report.steps), ("batch_size", report.batch_size),
                           ("allow_vacuous", report.allow_vacuous)):  # fmt: skip
            ET.SubElement(properties, "property", name=key, value=str(value))
        for check in report.checks():
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=spec, name=check, time="0.000")
            outcome = _outcome(report, check)
            if outcome is not None:
                kind, message, text = outcome
                attributes = {"message": message} | ({"type": "ParityMismatch"} if kind == "failure" else {})
                ET.SubElement(case, kind, attributes).text = text
                counts["failures" if kind == "failure" else "skipped"] += 1
        for check, why in report.skipped.items():  # a check that could not run is a skipped test, not a missing one
            counts["tests"] += 1
            counts["skipped"] += 1
            case = ET.SubElement(suite, "testcase", classname=spec, name=check, time="0.000")
            ET.SubElement(case, "skipped", {"message": f"not run: {why}"})
        ET.SubElement(suite, "system-out").text = render_text(report)
    for key, value in counts.items():
        suite.set(key, str(value))
    return suite


def _outcome(report: ParityReport, check: str) -> tuple[str, str, str] | None:
    worst = report.worst(check)
    where = report.decided_in.get(check, report.precision)
    if report.vacuous(check):
        message = f"{check} compared nothing (no tensors, or every tensor zero in both frameworks)"
        return ("skipped", message + ": allowed", "") if report.allow_vacuous else ("failure", message, message)
    if report.check_ok(check) or worst is None:
        return None
    bad = [d for d in report.rows(check) if not d.ok]
    message = (f"{worst.node} {worst.tensor}: max abs {worst.max_abs:.3g}, max rel {worst.max_rel:.3g}, "
               f"limit {worst.limit:g} ({worst.measure}, {where}); {len(bad)} of {len(report.rows(check))} tensors over")  # fmt: skip
    text = "\n".join(
        f"{d.node} {d.tensor}: abs {d.max_abs:.3g} rel {d.max_rel:.3g} limit {d.limit:g}" for d in bad[:50]
    )
    return "failure", message, text


def write_junit(
    path: str | os.PathLike[str], reports: list[tuple[str, ParityReport | str]], *, seconds: float = 0.0
) -> None:
    """Write atomically; refuse to replace a file that is not a JUnit report this tool wrote
    ("no command overwrites what it did not create")."""
    target = Path(path)
    if target.exists() and not written_by_us(target):
        raise FileExistsError(
            f"{target} exists and is not a resnet-spec JUnit report; remove it or choose another path"
        )
    with atomic_path(target) as tmp:
        tmp.write_text(junit_xml(reports, seconds=seconds), encoding="utf-8")


def written_by_us(path: Path) -> bool:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return False
    return root.tag == "testsuites" and root.get("name") == SUITES_NAME
