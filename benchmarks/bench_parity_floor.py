"""What each framework alone costs for the work a parity run asks of it, with no parity code.

For one spec (default ``examples/resnet50.yaml``), in a fresh process per backend, in float64 at
the parity run's batch: importing the framework, building the model, one eval forward, and
train-mode forward and backward passes (``--steps`` of them, as parity's probe takes). Keras also
times the pass traced as a ``tf.function`` (first call, with tracing, then one more). The sum per
backend is the least time a parity run of that spec can take on this machine however it
arranges its own work (docs/parity.md, "Memory and time").

    python benchmarks/bench_parity_floor.py examples/resnet50.yaml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def timed(rows: list[dict[str, Any]], label: str, work: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    rows.append({"task": label, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})
    return out


def measure(backend: str, spec: str, batch: int, steps: int) -> list[dict[str, Any]]:
    import numpy as np

    import resnet_spec
    from resnet_spec.backends import get_backend

    arch = resnet_spec.build_architecture(Path(spec))
    inputs = arch.spec.input
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, inputs.height, inputs.width, inputs.channels))
    labels = rng.integers(0, arch.spec.classes or 1, batch)
    rows: list[dict[str, Any]] = []
    run = _torch if backend == "torch" else _keras
    run(rows, get_backend(backend), arch, images, labels, steps)
    return rows


def _torch(rows: list[dict[str, Any]], backend: Any, arch: Any, images: Any, labels: Any, steps: int) -> None:
    timed(rows, "import", lambda: __import__("torch"))
    import torch

    model = timed(rows, "build", lambda: backend.build(arch, dtype="float64"))
    x, y = torch.tensor(images.transpose(0, 3, 1, 2)), torch.tensor(labels)
    model.eval()
    with torch.no_grad():
        timed(rows, "eval forward", lambda: model(x))
    model.train()

    def step() -> None:
        torch.nn.functional.cross_entropy(model(x), y).backward()

    for index in range(steps):
        timed(rows, f"train forward and backward {index + 1}", step)


def _keras(rows: list[dict[str, Any]], backend: Any, arch: Any, images: Any, labels: Any, steps: int) -> None:
    timed(rows, "import", lambda: __import__("tensorflow"))
    import keras
    import tensorflow as tf

    model = timed(rows, "build", lambda: backend.build(arch, dtype="float64"))
    x, y = tf.constant(images), tf.constant(labels)
    timed(rows, "eval forward", lambda: model(x, training=False))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step() -> Any:
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return tape.gradient(value, model.trainable_variables)

    for index in range(steps):
        timed(rows, f"train forward and backward {index + 1}", step)
    traced = tf.function(step)
    timed(rows, "the same in a tf.function, first call (traced)", traced)
    timed(rows, "the same in a tf.function, again", traced)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "examples" / "resnet50.yaml"))
    parser.add_argument("--backends", default="keras,torch")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.spec, args.batch_size, args.steps)))
        return 0
    for backend in args.backends.split(","):
        command = [sys.executable, __file__, args.spec, "--child", backend,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps)]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{backend}: failed\n{proc.stderr.strip()[-2000:]}", file=sys.stderr)
            return 1
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{backend}: {Path(args.spec).name}, float64, batch {args.batch_size}")
        for row in rows:
            print(f"  {row['task']:<52} {row['wall_s']:7.2f} s wall {row['cpu_s']:7.2f} s CPU")
        plain = [r for r in rows if "tf.function" not in r["task"]]
        print(f"  {'sum (import, build, eval, the steps eagerly)':<52} {sum(r['wall_s'] for r in plain):7.2f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
