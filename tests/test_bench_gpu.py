"""benchmarks/bench_gpu_throughput.py runs on a CPU with tiny settings (its GPU numbers are for a
machine with a GPU): both models, through each backend's trainer step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model", "both", "--device", "cpu", "--batch-size", "2", "--steps", "2", "--warmup", "1", "--chunk", "1",
        "--set", "input.height=32", "--set", "input.width=32"]  # fmt: skip


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=pytest.mark.torch),
                                     pytest.param("keras", marks=pytest.mark.keras)])  # fmt: skip
def test_gpu_benchmark_runs_on_a_cpu(backend: str) -> None:
    pytest.importorskip("torch" if backend == "torch" else "keras")
    command = [sys.executable, str(REPO / "benchmarks" / "bench_gpu_throughput.py"), "--backend", backend,
               "--amp", "bfloat16", "--channels-last", *TINY]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [("resnet50", "32x32x3", "2"), ("resnet20", "32x32x3", "2")]
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)
    assert all("mixed_precision=bfloat16" in " ".join(row) for row in rows)
