#!/usr/bin/env python
"""Hostile spec files: is each one refused, how fast, and with how much memory?

    python benchmarks/bench_hostile.py              # every case, a markdown table (docs/threat-model.md)
    python benchmarks/bench_hostile.py --json       # the same as JSON
    python benchmarks/bench_hostile.py alias_bomb   # selected cases

Every case runs in a fresh subprocess (``python -c``, ``import resnet_spec``) under an address
space limit (RLIMIT_AS, 4 GiB) and a wall-clock limit (120 s; 30 s for cases with an open bug), and validates the hostile
file *by path*, as ``resnet-spec validate FILE`` does. Measured per case:

* ``seconds``: wall time of ``resnet_spec.validate(path)`` (tracemalloc off);
* ``cpu_seconds``: the CPU time of that call (user + system), which a busy machine inflates far
  less than the wall time;
* ``rss_mib``: growth of the process's peak resident set (``ru_maxrss``) during that call, over
  the peak after ``import resnet_spec`` (about 35 MiB here);
* ``traced_mib``: peak of Python allocations (tracemalloc) in a second, traced call.

tests/test_hostile_files.py imports :data:`CASES` and :func:`measure` from this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b"version: 1\ninput: {height: 32, width: 32, channels: 3}\nclasses: 10\n"
STAGE = b"stages:\n  - {block: basic, blocks: 2, filters: 16}\n"


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    make: Callable[[], bytes]  # the file's bytes (ignored for sparse cases)
    expect: tuple[str, ...]  # one of these codes must be reported
    suffix: str = ".yaml"
    mention: tuple[str, ...] = ()  # words the first diagnostic's message or hint must contain
    sparse_size: int = 0  # > 0: a sparse file of this size instead of make()
    open_bug: str | None = None  # why it is not refused quickly yet (tests mark it xfail, strict)
    side_effect: str | None = None  # a path that must not exist afterwards (code execution check)
    tags: tuple[str, ...] = field(default=())
    as_mapping: bool = False  # validate yaml.safe_load(file) (the Python API, a saved model's spec), not the path


def _alias_bomb() -> bytes:
    lines = [b'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 9).encode()
        lines.append(b"a%d: &a%d [" % (i, i) + refs + b"]")
    return HEADER + STAGE + b"description: x\n" + b"\n".join(lines) + b"\n"


def _alias_count() -> bytes:
    return HEADER + STAGE + b"x: &x 1\nlots: [" + b", ".join([b"*x"] * 5000) + b"]\n"


def _deep_flow() -> bytes:
    return HEADER + STAGE + b"deep: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"


def _deep_block() -> bytes:
    body = b"".join(b"  " * i + b"k:\n" for i in range(300))
    return HEADER + STAGE + body + b"  " * 300 + b"k: 1\n"


def _deep_json() -> bytes:
    return b'{"version": 1, "deep": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"


def _large() -> bytes:
    return HEADER + STAGE + b"# padding\n" * 150_000  # 1.5 MB of comments


def _wide() -> bytes:
    return HEADER + STAGE + b"wide: [" + b"1, " * 300_000 + b"1]\n"  # 300k scalars, under 1 MB


def _unknown_keys() -> bytes:
    return HEADER + STAGE + b"".join(b"k%d: 1\n" % i for i in range(80_000))  # ~0.9 MB


def _many_stages() -> bytes:
    return HEADER + b"stages:\n" + b"  - {filters: 3, blocks: 1}\n" * 35_000  # limit: 64 stages


def _spec(extra: bytes, stages: bytes = STAGE) -> Callable[[], bytes]:
    return lambda: HEADER + extra + stages


def _tag(text: bytes) -> Callable[[], bytes]:
    return lambda: HEADER + STAGE + text


def _node_bomb() -> bytes:
    layers = b"".join(b"      - {type: activation}\n" for _ in range(256))
    return (
        HEADER
        + b"blocks:\n  k:\n    layers:\n"
        + layers
        + b"stages:\n  - {block: k, blocks: 20000, filters: 3, shortcut: identity}\n"
    )


def _regression(name: str) -> Callable[[], bytes]:
    return lambda: (Path(__file__).resolve().parents[1] / "tests" / "regressions" / name).read_bytes()


PWNED = os.path.join(tempfile.gettempdir(), "resnet-spec-hostile-pwned")

CASES: list[Case] = [
    Case("alias_bomb", "billion laughs: 9 levels of 9 aliases (9^9 nodes)", _alias_bomb, ("RS007",)),
    Case("alias_count", "5,000 aliases of one scalar", _alias_count, ("RS007",)),
    Case("deep_flow", "100,000 nested flow lists [[[...]]]", _deep_flow, ("RS008",)),
    Case("deep_block", "300 nested block mappings", _deep_block, ("RS008",)),
    Case("deep_json", "100,000 nested JSON objects", _deep_json, ("RS008",), suffix=".json"),
    Case("large_file", "1.5 MB file (limit 1 MB)", _large, ("RS006",)),
    Case(
        "sparse_10gib",
        "10 GiB sparse file: refused by size, never read",
        lambda: b"",
        ("RS006",),
        sparse_size=10 * 2**30,
    ),
    Case("wide_list", "a flow list of 300,000 scalars (node limit 200,000)", _wide, ("RS007",)),
    Case(
        "unknown_keys",
        "80,000 unknown top-level keys (0.8 MB)",
        _unknown_keys,
        ("RS101",),  # fixed: 100 diagnostics, then one RS110 "and 79,900 more problems"
    ),
    Case("many_stages", "35,000 stages (limit 64)", _many_stages, ("RS105",)),
    # 10^9 and 10^12 are even, and 2n + 1 is odd: no whole n, so RS205 (with the size of the
    # nearest valid depth in its hint); 10^9 + 1 and 10^12 + 1 give whole n, so RS207.
    Case(
        "depth_1e9",
        "depth: 10^9",
        _spec(b"depth: 1000000000\n", b"stages:\n  - {block: basic, filters: 16}\n"),
        ("RS207", "RS205"),
        mention=("parameters", "GiB"),
    ),
    Case(
        "depth_1e9_plus_1",
        "depth: 10^9 + 1",
        _spec(b"depth: 1000000001\n", b"stages:\n  - {block: basic, filters: 16}\n"),
        ("RS207",),
        mention=("parameters", "GiB"),
    ),
    Case(
        "depth_1e12",
        "depth: 10^12",
        _spec(b"depth: 1000000000000\n", b"stages:\n  - {block: basic, filters: 16}\n"),
        ("RS207", "RS205"),
        mention=("parameters", "GiB"),
    ),
    Case(
        "depth_1e12_plus_1",
        "depth: 10^12 + 1",
        _spec(b"depth: 1000000000001\n", b"stages:\n  - {block: basic, filters: 16}\n"),
        ("RS207",),
        mention=("parameters", "GiB"),
    ),
    Case(
        "filters_1e12",
        "filters: 10^12",
        _spec(b"", b"stages:\n  - {block: basic, blocks: 2, filters: 1000000000000}\n"),
        ("RS207",),
        mention=("parameters", "GiB"),
    ),
    Case(
        "blocks_1e9",
        "blocks: 10^9",
        _spec(b"", b"stages:\n  - {block: basic, blocks: 1000000000, filters: 16}\n"),
        ("RS207",),
        mention=("parameters", "GiB"),
    ),
    Case(
        "units_1e12",
        "a dense layer of 10^12 units",
        _spec(b"head: {layers: [{type: global_avg_pool}, {type: dense, units: 1000000000000}]}\n"),
        ("RS207",),
        mention=("parameters", "GiB"),
    ),
    Case(
        "integer_5000_digits",
        "a 5,000-digit integer",
        _spec(b"", b"stages:\n  - {block: basic, blocks: 2, filters: " + b"9" * 5000 + b"}\n"),
        ("RS103",),
    ),
    Case(
        "float_overflow",
        "filters: 1e999 (inf)",
        _spec(b"", b"stages:\n  - {block: basic, blocks: 2, filters: 1e999}\n"),
        ("RS103",),
    ),
    Case("utf16", "UTF-16 text (BOM ff fe)", lambda: (HEADER + STAGE).decode().encode("utf-16"), ("RS002",)),
    Case("latin1", "Latin-1 bytes in a comment", lambda: HEADER + STAGE + b"# caf\xe9\n", ("RS002",)),
    Case("nul_bytes", "NUL bytes", lambda: HEADER + b"\x00\x00" + STAGE, ("RS003",)),
    Case(
        "python_apply",
        "!!python/object/apply:os.system",
        _tag(f"x: !!python/object/apply:os.system ['touch {PWNED}']\n".encode()),
        ("RS009",),
        side_effect=PWNED,
    ),
    Case("python_name", "!!python/name:os.system", _tag(b"x: !!python/name:os.system ''\n"), ("RS009",)),
    Case(
        "python_new",
        "!!python/object/new:subprocess.Popen",
        _tag(f"x: !!python/object/new:subprocess.Popen [['touch', '{PWNED}']]\n".encode()),
        ("RS009",),
        side_effect=PWNED,
    ),
    Case("python_module", "!!python/module:os", _tag(b"x: !!python/module:os ''\n"), ("RS009",)),
    Case(
        "tag_on_mapping",
        "!!python/object:os._wrap_close {}",
        _tag(b"x: !!python/object:os._wrap_close {a: 1}\n"),
        ("RS009",),
    ),
    Case("binary_tag", "!!binary", _tag(b"x: !!binary aGVsbG8=\n"), ("RS009",)),
    Case("set_tag", "!!set", _tag(b"x: !!set {a, b}\n"), ("RS009",)),
    Case("local_tag", "a local tag !Foo", _tag(b"x: !Foo bar\n"), ("RS009",)),
    Case("merge_key", "YAML merge key <<", _tag(b"base: &b {filters: 1}\nx: {<<: *b}\n"), ("RS009",)),
    Case(
        "node_bomb",
        "a 256-layer custom block x 20,000 blocks (5.1M graph nodes from a 7 kB file)",
        _node_bomb,
        ("RS207",),  # fixed: the size budget now counts graph nodes (limit 500,000)
    ),
    Case(
        "shared_lists_mapping",
        "as a mapping: 60 levels of [x, x] sharing their items (what a 1.7 kB .pt can hold)",
        _regression("shared_lists_mapping.yaml"),
        ("RS007", "RS103"),
        as_mapping=True,  # fixed: pipeline._nesting_problems counts the values it visits
    ),
]
BY_NAME = {case.name: case for case in CASES}

_CHILD = r"""
import json, os, resource, sys, time, tracemalloc
path, traced, as_mapping = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
import resnet_spec
if as_mapping:  # PyYAML keeps aliases as shared references, as a pickle's memo does
    import yaml
    with open(path, "rb") as handle:
        path = yaml.safe_load(handle)
before = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
result = resnet_spec.validate(path)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF)
base, grown = before.ru_maxrss, after.ru_maxrss - before.ru_maxrss
cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
traced_peak = None
if traced:
    tracemalloc.start()
    resnet_spec.validate(path)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
print(json.dumps({
    "seconds": seconds, "cpu_seconds": cpu, "rss_mib": grown / 1024, "base_rss_mib": base / 1024,
    "traced_mib": None if traced_peak is None else traced_peak / 2**20,
    "ok": result.ok, "codes": sorted({d.code for d in result.diagnostics}), "diagnostics": len(result.diagnostics),
    "message": (result.diagnostics[0].message + " | hint: " + (result.diagnostics[0].hint or ""))[:400] if result.diagnostics else "",
    "line": result.diagnostics[0].line if result.diagnostics else None,
}))
"""

MEMORY_LIMIT = 4 * 2**30


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def measure(
    case: Case, *, timeout: float = 120.0, traced: bool = True, workdir: Path | None = None
) -> dict[str, object]:
    """Validate the case's file in a fresh, memory-limited subprocess and return the measurements
    (``timed_out``: killed after ``timeout`` seconds; ``crashed``: the child failed)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / f"{case.name}{case.suffix}"
        if case.sparse_size:
            with open(path, "wb") as handle:
                handle.truncate(case.sparse_size)
        else:
            path.write_bytes(case.make())
        size = path.stat().st_size
        if case.side_effect and os.path.exists(case.side_effect):
            os.remove(case.side_effect)
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), "1" if traced else "0", "1" if case.as_mapping else "0"],
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=_limit_memory,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"case": case.name, "bytes": size, "timed_out": True, "crashed": False, "seconds": timeout}
        row: dict[str, object] = {"case": case.name, "bytes": size, "timed_out": False}
        if done.returncode != 0:
            row.update(crashed=True, error=done.stderr.strip().splitlines()[-1:] or ["?"])
            return row
        row.update(json.loads(done.stdout.strip().splitlines()[-1]), crashed=False)
        if case.side_effect:
            row["side_effect"] = os.path.exists(case.side_effect)
        return row


def refused_as_expected(case: Case, row: dict[str, object]) -> bool:
    if row.get("timed_out") or row.get("crashed") or row.get("ok"):
        return False
    message = str(row.get("message", ""))
    return bool(set(row["codes"]) & set(case.expect)) and all(word in message for word in case.mention)  # type: ignore[arg-type]


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| case | file | refused with | time (s) | CPU (s) | peak RSS growth (MiB) | traced peak (MiB) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        case = BY_NAME[str(row["case"])]
        size = int(row["bytes"])  # type: ignore[call-overload]
        shown = (
            f"{size / 2**30:.0f} GiB (sparse)"
            if case.sparse_size
            else (f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size:,} B")
        )
        if row.get("timed_out"):
            verdict, secs, cpu, rss, traced = (
                "**not refused: killed at the time limit**",
                f"> {row['seconds']:.0f}",
                "-",
                "-",
                "-",
            )
        elif row.get("crashed"):
            verdict, secs, cpu, rss, traced = f"**crashed**: {row.get('error')}", "-", "-", "-", "-"
        else:
            codes = ", ".join(row["codes"]) or "accepted"  # type: ignore[arg-type]
            verdict = codes if refused_as_expected(case, row) else f"**{codes}** (expected {', '.join(case.expect)})"
            secs, cpu, rss = f"{row['seconds']:.3f}", f"{row['cpu_seconds']:.3f}", f"{row['rss_mib']:.1f}"
            traced = "-" if row.get("traced_mib") is None else f"{row['traced_mib']:.1f}"
        lines.append(f"| `{case.name}`: {case.what} | {shown} | {verdict} | {secs} | {cpu} | {rss} | {traced} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    names = [a for a in argv if not a.startswith("--")]
    cases = [BY_NAME[n] for n in names] if names else CASES
    rows = []
    for case in cases:
        row = measure(case, timeout=30.0 if case.open_bug else 120.0)  # an open bug may run for ever
        rows.append(row)
        if not as_json:
            print(f"{case.name}: {json.dumps(row)[:300]}", file=sys.stderr)
    print(json.dumps(rows, indent=2) if as_json else table(rows))
    return 0 if all(refused_as_expected(BY_NAME[str(r["case"])], r) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
