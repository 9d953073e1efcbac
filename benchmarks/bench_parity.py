"""Peak memory and time of ``resnet-spec parity``, before (a git ref, default ``main``) and after
(this tree), in the same run, with a golden comparison of their reports.

    .venv/bin/python benchmarks/bench_parity.py                       # ResNet-20, -50, -152
    .venv/bin/python benchmarks/bench_parity.py --specs examples/resnet50.yaml --before HEAD~3

Each case runs ``resnet-spec parity SPEC --format json`` in a subprocess of its own (the
"before" code from ``git archive REF`` in a temporary folder). Reported per case: wall time,
CPU time (the case's whole process tree), the load average of the machine at the start and end
(other work disturbs wall time: compare CPU times and same-run ratios), the largest resident
set of any one process of the tree (``getrusage(RUSAGE_CHILDREN)``) and the largest sum over
the tree's live processes (sampled every 20 ms: a run whose sides are child processes holds
the parent and one side at a time). Then, for each spec, whether both reports have the same
verdicts, the same worst node and tensor in every check, and how many rows are identical.
Exit status 1 if a golden comparison differs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = ["examples/resnet20_cifar10.yaml", "examples/resnet50.yaml", "examples/resnet152.yaml"]
CLI = "import sys; from resnet_spec.cli import main; sys.exit(main(sys.argv[1:]))"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", nargs="+", default=DEFAULT_SPECS)
    parser.add_argument("--before", default="main", help="git ref of the code to compare with (default main)")
    parser.add_argument("--no-before", action="store_true", help="measure this tree only")
    parser.add_argument("--args", default="", help="extra parity options for every case, e.g. '--precision float32'")
    parser.add_argument("--measure", nargs=3, metavar=("ROOT", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure, extra=args.args.split())
    with tempfile.TemporaryDirectory(prefix="bench-parity-") as tmp:
        roots = {"after": REPO}
        if not args.no_before:
            roots = {"before": snapshot(args.before, Path(tmp) / "before"), **roots}
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for spec in args.specs:
            for label, root in roots.items():
                out = Path(tmp) / f"{label}-{Path(spec).stem}.json"
                proc = subprocess.run([sys.executable, __file__, "--args", args.args, "--measure", str(root), spec, str(out)],
                                      capture_output=True, text=True, check=False)  # fmt: skip
                if proc.returncode != 0:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 2
                results[(spec, label)] = json.loads(out.read_text())
                print_case(spec, label, results[(spec, label)], results.get((spec, "before")))
        differs = False
        if "before" in roots:
            print("\ngolden comparison (before vs after):")
            for spec in args.specs:
                same, text = golden(results[(spec, "before")]["report"], results[(spec, "after")]["report"])
                differs |= not same
                print(f"  {Path(spec).stem}: {text}")
    return 1 if differs else 0


def snapshot(ref: str, folder: Path) -> Path:
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "resnet_spec", "backends", "examples"],
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def measure(root: str, spec: str, out: str, *, extra: list[str]) -> int:
    """Run one case as this process's only child; write its numbers and report to ``out``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, str(Path(root) / "backends")]))
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "parity", str(REPO / spec), "--format", "json", *extra],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - started
    sampler.stop()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_process_mb": usage.ru_maxrss / 1024, "max_tree_mb": sampler.peak / 2**20,
        "load": [load_start, os.getloadavg()[0]], "report": json.loads(stdout) if stdout.strip() else None,
    }  # fmt: skip
    Path(out).write_text(json.dumps(result))
    return 0


class TreeSampler(threading.Thread):
    """The largest sum of resident memory over a process and its descendants, sampled."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._done.wait(0.02):
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    statm = Path(f"/proc/{entry}/statm").read_text().split()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                rss[int(entry)] = int(statm[1]) * page
            tree, grew = {self.pid}, True
            while grew:
                more = {pid for pid, parent in parents.items() if parent in tree} - tree
                grew, tree = bool(more), tree | more
            self.peak = max(self.peak, sum(rss.get(pid, 0) for pid in tree))

    def stop(self) -> None:
        self._done.set()
        self.join()


def print_case(spec: str, label: str, r: dict[str, Any], before: dict[str, Any] | None) -> None:
    ratio = ""
    if before and label == "after":
        ratio = (f"  after/before: wall {r['wall_s'] / before['wall_s']:.2f}, cpu {r['cpu_s'] / before['cpu_s']:.2f}, "
                 f"memory {r['max_tree_mb'] / before['max_tree_mb']:.2f}")  # fmt: skip
    print(f"{Path(spec).stem:20s} {label:6s} exit {r['exit']}  wall {r['wall_s']:6.1f} s  cpu {r['cpu_s']:6.1f} s  "
          f"load {r['load'][0]:.1f}->{r['load'][1]:.1f}  max process {r['max_process_mb']:7.0f} MB  "
          f"max tree {r['max_tree_mb']:7.0f} MB{ratio}", flush=True)  # fmt: skip


def golden(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[bool, str]:
    if before is None or after is None:
        return False, "a report is missing"
    problems = [] if before["ok"] == after["ok"] else [f"verdict {before['ok']} -> {after['ok']}"]
    for check, old in before["checks"].items():
        new = after["checks"].get(check)
        if new is None:
            problems.append(f"{check} missing")
            continue
        if old["ok"] != new["ok"] or old["precision"] != new["precision"]:
            problems.append(f"{check}: {old['ok']}/{old['precision']} -> {new['ok']}/{new['precision']}")
        if (old["worst"]["node"], old["worst"]["tensor"]) != (new["worst"]["node"], new["worst"]["tensor"]):
            problems.append(f"{check} worst {old['worst']['node']} -> {new['worst']['node']}")
    rows_old = {(d["check"], d["node"], d["tensor"]): d["max_abs"] for d in before["differences"]}
    rows_new = {(d["check"], d["node"], d["tensor"]): d["max_abs"] for d in after["differences"]}
    same_rows = sum(rows_new.get(key) == value for key, value in rows_old.items())
    text = (f"verdict {'ok' if after['ok'] else 'FAIL'}, worst rows {'the same' if not problems else '; '.join(problems)}, "
            f"{same_rows}/{len(rows_old)} rows identical (rows after: {len(rows_new)})")  # fmt: skip
    return not problems, text


if __name__ == "__main__":
    sys.exit(main())
