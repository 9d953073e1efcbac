"""Build time and training throughput of the torch backend against hand-written ResNets.

    .venv/bin/python benchmarks/bench_torch.py              # ResNet-20 (32x32, batch 128), ResNet-50 (224x224, batch 8)
    .venv/bin/python benchmarks/bench_torch.py --quick      # fewer repeats, smaller ResNet-50 batch

Both models compute the same function (see tests/test_backend_torch.py), run in this process on
the same data, and are measured alternately so that drift in the machine's speed hits both.
Build: rounds of builds (each round about 0.1 s; the spec is validated once, outside the timing,
and the validation time is shown separately). Throughput: images per second of training steps
(forward, cross-entropy, backward, SGD with momentum), warm-up steps excluded. Each is reported
as the best round of each model and as the median of per-round ratios (see ``summarize``).
Targets: build <= 1.2x the reference, throughput >= 0.97x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as R
from resnet_spec_torch import TorchBackend

from resnet_spec.pipeline import build_architecture

BACKEND = TorchBackend()


def build_time(fn: Callable[[], object], per_round: int) -> Callable[[], float]:
    """A function that builds ``per_round`` models and returns the mean seconds per build."""

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        return (time.perf_counter() - start) / per_round

    return measure


def alternate(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple[list[float], list[float]]:
    """``rounds`` measurements of each, taken side by side (a, b; then b, a; ...)."""
    ta, tb = [], []
    for i in range(rounds):
        first, second = (b, a) if i % 2 else (a, b)
        one, two = first(), second()
        ta.append(one if first is a else two)
        tb.append(two if first is a else one)
    return ta, tb


def summarize(ref: list[float], ours: list[float], best: Callable[[list[float]], float]) -> dict[str, float]:
    """Two estimates that a shared, busy machine cannot fool together: the best round of each
    (other processes only ever slow a round down) and the median of the per-round ratios (the
    machine's speed drifts, and neighbouring rounds see the same speed)."""
    return {
        "ref": best(ref),
        "ours": best(ours),
        "best_ratio": best(ours) / best(ref),
        "paired_ratio": statistics.median(o / r for r, o in zip(ref, ours)),
    }


def train_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], float]:
    """A function that runs ``steps`` training steps and returns images per second."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * x.shape[0] / (time.perf_counter() - start)

    step()  # warm-up (allocator, lazy initialization): not measured
    step()
    return measure


def bench(name: str, spec: dict, make_ref: Callable[[], nn.Module], batch: int, builds: int, repeats: int,
          steps: int) -> dict[str, Any]:  # fmt: skip
    start = time.perf_counter()
    arch = build_architecture(spec)
    validate_s = time.perf_counter() - start
    make_ref(), BACKEND.build(arch)  # warm-up: first-call costs are no part of a build
    per_round = max(1, round(0.1 / build_time(make_ref, 1)()))  # rounds of about 0.1 s
    build = summarize(
        *alternate(build_time(make_ref, per_round), build_time(lambda: BACKEND.build(arch), per_round), builds), min
    )
    torch.manual_seed(0)
    ref, ours = make_ref(), BACKEND.build(arch)
    ours.load_state_dict(dict(zip(ours.state_dict(), ref.state_dict().values())))
    h, w, c = arch.graph.input.shape
    x, y = torch.randn(batch, c, h, w), torch.randint(0, arch.output_shape[0], (batch,))
    rate = summarize(*alternate(train_rate(ref, x, y, steps), train_rate(ours, x, y, steps), repeats), max)
    return {"model": name, "batch": batch, "validate_ms": validate_s * 1e3, "build": build, "rate": rate}


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<9} {'batch':>5} {'validate':>9} | {'build ref':>9} {'ours':>8} {'ratio':>6} {'paired':>6} | "
            f"{'img/s ref':>9} {'ours':>7} {'ratio':>6} {'paired':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        b, t = r["build"], r["rate"]
        lines.append(
            f"{r['model']:<9} {r['batch']:>5} {r['validate_ms']:>7.1f}ms | {b['ref'] * 1e3:>7.1f}ms {b['ours'] * 1e3:>6.1f}ms "
            f"{b['best_ratio']:>5.2f}x {b['paired_ratio']:>5.2f}x | {t['ref']:>9.1f} {t['ours']:>7.1f} "
            f"{t['best_ratio']:>5.3f}x {t['paired_ratio']:>5.3f}x"
        )  # fmt: skip
    lines += [
        "build: fastest round, ms per build; img/s: fastest round of training steps; ratio: ours / reference of",
        "those; paired: median over rounds of ours / reference. Targets: build <= 1.2x, throughput >= 0.97x.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller ResNet-50 batch")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU" + (" (quick)" if quick else ""))
    rows = [
        bench("resnet20", R.cifar_spec(20), R.cifar_resnet, batch=128, builds=5 if quick else 15,
              repeats=3 if quick else 7, steps=2 if quick else 4),
        bench("resnet50", R.imagenet_spec("resnet50", 224), R.resnet50, batch=4 if quick else 8, builds=3 if quick else 7,
              repeats=3 if quick else 5, steps=1 if quick else 2),
    ]  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
