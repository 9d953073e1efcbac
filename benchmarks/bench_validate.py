"""Validation speed of ResNet-1202 (the deepest example), in-process and through the CLI, next to
a reference measured in the same run: the time it takes just to `import tensorflow`.

    python benchmarks/bench_validate.py [--repeats 20]

Targets on a 2-core CI-class machine: at most 50 ms in-process, at most 0.5 s for the whole CLI
command (process start-up included). Each row gives the median wall time and the median CPU time
(process time of this process, or of the child for the commands): on a machine shared with other
jobs wall time mostly measures the others, CPU time much less so. The load average is printed
before and after.

With PYTHONDONTWRITEBYTECODE set (some sandboxes and CI images set it), every CLI start compiles
the package's sources again, which an installed package never does (pip compiles them at install
time). The CLI is then also measured with a bytecode cache in a temporary PYTHONPYCACHEPREFIX, as
it runs when installed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "resnet1202_cifar10.yaml"
CLI = [sys.executable, "-m", "resnet_spec.cli", "validate", "-q", str(SPEC)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(fn: Callable[[], object], repeats: int, cpu: Callable[[], float]) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``fn``; ``cpu`` reads the clock that ``fn`` spends."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, used = time.perf_counter(), cpu()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu() - used)
    return statistics.median(walls), statistics.median(cpus)


def _command(argv: list[str], env: dict[str, str] | None = None, quiet: bool = False) -> Callable[[], object]:
    output = subprocess.DEVNULL if quiet else None
    return lambda: subprocess.run(argv, check=True, env=env, stdout=output, stderr=output)


def _cached_bytecode_env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": cache}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    load_before = os.getloadavg()

    import resnet_spec

    result = resnet_spec.validate(SPEC)  # also the warm-up
    assert result.ok, result.report.sorted()
    nodes = len(result.architecture.graph) if result.architecture else 0
    cli_repeats = max(3, args.repeats // 2)
    rows = [
        ("validate in-process", _measure(lambda: resnet_spec.validate(SPEC), args.repeats, time.process_time), 0.050),
        ("resnet-spec validate (whole CLI process)", _measure(_command(CLI), cli_repeats, _children_cpu), 0.5),
    ]
    if sys.flags.dont_write_bytecode:
        with tempfile.TemporaryDirectory() as cache:
            env = _cached_bytecode_env(cache)
            subprocess.run(CLI, check=True, env=env)  # fills the cache
            rows.append(("  the same, bytecode cached (as installed)", _measure(_command(CLI, env), cli_repeats, _children_cpu), 0.5))
    reference = _measure(_command([sys.executable, "-c", "import tensorflow"], quiet=True), 3, _children_cpu)

    print(f"ResNet-1202: {nodes} graph nodes; load average {_load(load_before)} before, {_load(os.getloadavg())} after")
    if sys.flags.dont_write_bytecode:
        print("PYTHONDONTWRITEBYTECODE is set: plain CLI runs compile the package's sources at every start")
    print(f"{'measurement':42s} {'wall':>9s} {'CPU':>9s} {'target':>7s} {'wall vs import tensorflow':>26s}")
    for label, (wall, cpu), target in rows:
        verdict = "ok" if wall <= target else ("ok in CPU time" if cpu <= target else "MISSED")
        print(f"{label:42s} {wall * 1000:7.1f}ms {cpu * 1000:7.1f}ms {target * 1000:5.0f}ms {wall / reference[0]:12.3f}x  {verdict}")
    label = 'reference: python -c "import tensorflow"'
    print(f"{label:42s} {reference[0] * 1000:7.1f}ms {reference[1] * 1000:7.1f}ms")


def _load(averages: tuple[float, float, float]) -> str:
    return "/".join(f"{a:.2f}" for a in averages)


if __name__ == "__main__":
    main()
