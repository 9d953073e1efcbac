"""Validation speed of ResNet-1202 (the deepest example), in-process and through the CLI, next to
a reference measured in the same run: the time it takes just to `import tensorflow`.

    python benchmarks/bench_validate.py [--repeats 20]

Targets on a 2-core CI-class machine: under 50 ms in-process, under 0.5 s for the whole CLI
command (process start-up included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "resnet1202_cifar10.yaml"


def _median_seconds(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import resnet_spec

    result = resnet_spec.validate(SPEC)
    assert result.ok, result.report.sorted()
    nodes = len(result.architecture.graph) if result.architecture else 0
    in_process = _median_seconds(lambda: resnet_spec.validate(SPEC), args.repeats)
    cli = _median_seconds(
        lambda: subprocess.run([sys.executable, "-m", "resnet_spec.cli", "validate", "-q", str(SPEC)], check=True),
        max(3, args.repeats // 4),
    )
    reference = _median_seconds(lambda: subprocess.run([sys.executable, "-c", "import tensorflow"], check=True), 3)

    print(f"ResNet-1202: {nodes} graph nodes")
    print(f"{'measurement':42s} {'median':>10s} {'target':>8s} {'vs import tensorflow':>22s}")
    rows = [("validate in-process", in_process, 0.050), ("resnet-spec validate (whole CLI process)", cli, 0.5)]
    for label, seconds, target in rows:
        verdict = "ok" if seconds < target else "MISSED"
        print(f"{label:42s} {seconds * 1000:8.1f}ms {target * 1000:6.0f}ms {seconds / reference:8.3f}x  {verdict}")
    label = 'reference: python -c "import tensorflow"'
    print(f"{label:42s} {reference * 1000:8.1f}ms")


if __name__ == "__main__":
    main()
