"""Part 3 of the fuzzing issue: hostile files are refused quickly, with bounded memory.

Each case of benchmarks/bench_hostile.py (alias bombs, deep nesting, oversized and sparse
files, huge numbers, non-UTF-8 bytes, YAML tags that would construct Python objects) is
validated by path in a fresh subprocess under a 4 GiB address-space limit; the test asserts the
expected diagnostic code, that the validation took under MAX_SECONDS of CPU time and grew the
peak RSS by under MAX_RSS_MIB. These bounds are generous on purpose (they check boundedness, not
speed); CPU time rather than wall time, because CI machines are shared and a busy one stretches
the wall time several-fold (TIMEOUT, in wall time, catches what never finishes). The measured
numbers are in docs/threat-model.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

import resnet_spec

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_hostile", ROOT / "benchmarks" / "bench_hostile.py")
H = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["bench_hostile"] = H
_spec.loader.exec_module(H)  # type: ignore[union-attr]

MAX_SECONDS = 3.0  # CPU time
MAX_RSS_MIB = 200.0
TIMEOUT = 15.0  # wall time: a case still running then is "not refused quickly"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_AS and ru_maxrss are POSIX")


def _cases() -> list[object]:
    marks = {c.name: [pytest.mark.xfail(strict=True, reason=c.open_bug)] if c.open_bug else [] for c in H.CASES}
    return [pytest.param(c, marks=marks[c.name], id=c.name) for c in H.CASES]


@pytest.mark.parametrize("case", _cases())
def test_hostile_file_is_refused_quickly_with_bounded_memory(case, tmp_path: Path) -> None:
    row = H.measure(case, timeout=TIMEOUT, traced=False, workdir=tmp_path)
    assert not row.get("timed_out"), f"{case.name}: still running after {TIMEOUT} s"
    assert not row.get("crashed"), f"{case.name}: the validator process failed: {row.get('error')}"
    assert not row.get("ok"), f"{case.name}: accepted"
    assert set(row["codes"]) & set(case.expect), f"{case.name}: got {row['codes']}, expected {case.expect}"
    for word in case.mention:
        assert word in row["message"], f"{case.name}: the message does not mention {word!r}: {row['message']}"
    assert row["line"] is None or row["line"] >= 1
    assert row["cpu_seconds"] < MAX_SECONDS, (
        f"{case.name}: {row['cpu_seconds']:.2f} s of CPU ({row['seconds']:.2f} s wall)"
    )
    assert row["rss_mib"] < MAX_RSS_MIB, f"{case.name}: peak RSS grew by {row['rss_mib']:.0f} MiB"
    if case.side_effect:
        assert row["side_effect"] is False, f"{case.name}: the tag ran code ({case.side_effect} exists)"


def test_tags_never_construct_objects_in_process() -> None:
    """The same tags, in this process: no object is built, nothing is executed."""
    marker = Path(H.PWNED)
    if marker.exists():
        marker.unlink()
    for case in H.CASES:
        if case.expect == ("RS009",):
            result = resnet_spec.validate(case.make(), filename=f"{case.name}.yaml")
            assert not result.ok and {d.code for d in result.diagnostics} & {"RS009"}, case.name
            assert all(d.line is not None for d in result.diagnostics), case.name
    assert not marker.exists()


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    """A 10 GiB sparse file is refused from its size alone (reading it would take minutes)."""
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(10 * 2**30)
    result = resnet_spec.validate(big)
    assert [d.code for d in result.diagnostics] == ["RS006"]
    assert str(10 * 2**30) in result.diagnostics[0].message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_unbounded_stream_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    """A pipe has no size: the loader reads one byte past the limit and stops."""
    import threading

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    written: list[int] = []

    def writer() -> None:
        chunk = b"# " + b"x" * 65_000 + b"\n"
        try:
            with open(fifo, "wb") as handle:
                for _ in range(10_000):  # 650 MB if it were all read
                    handle.write(chunk)
                    written.append(len(chunk))
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    result = resnet_spec.validate(fifo)
    assert [d.code for d in result.diagnostics] == ["RS006"]
    thread.join(timeout=10)
    assert sum(written) < 50_000_000, "the loader kept reading past its limit"


def test_a_flood_of_problems_is_summarised() -> None:
    """Past schema_check.MAX_DIAGNOSTICS places, one RS110 stands for the rest, at the first of them."""
    from resnet_spec.schema_check import MAX_DIAGNOSTICS

    keys = b"".join(b"k%d: 1\n" % i for i in range(MAX_DIAGNOSTICS + 50))
    result = resnet_spec.validate(H.HEADER + H.STAGE + b"verison: 1\n" + keys, filename="flood.yaml")
    codes = [d.code for d in result.diagnostics]
    assert codes.count("RS110") == 1 and len(codes) == MAX_DIAGNOSTICS + 1, codes
    more = result.diagnostics[-1]
    assert more.code == "RS110" and "51 more problems" in more.message
    # `verison` and k0...k98 are listed; k99 (line 7 + 99) is the first one left out
    assert more.key_path == (f"k{MAX_DIAGNOSTICS - 1}",) and more.line == 7 + MAX_DIAGNOSTICS - 1
    first = result.diagnostics[0]
    assert first.key_path == ("verison",) and first.hint == "did you mean `version`?"
