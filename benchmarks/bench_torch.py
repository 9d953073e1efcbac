"""Build time and training throughput of the torch backend against hand-written ResNets.

    .venv/bin/python benchmarks/bench_torch.py              # ResNet-20 (32x32, batch 128), ResNet-50 (224x224, batch 8)
    .venv/bin/python benchmarks/bench_torch.py --quick      # fewer repeats, smaller ResNet-50 batch

Both models compute the same function (see tests/test_backend_torch.py), run in this process on
the same data, and are measured alternately so that drift in the machine's speed hits both.
Build: median over rounds of builds (each round about 0.1 s; the spec is validated once, outside
the timing, and the validation time is shown separately). Throughput: images per second of a training step
(forward, cross-entropy, backward, SGD with momentum), warm-up steps excluded, median of the
repeats. Targets: build <= 1.2x the reference, throughput >= 0.97x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as R  # noqa: E402

from resnet_spec.pipeline import build_architecture  # noqa: E402
from resnet_spec_torch import TorchBackend  # noqa: E402

BACKEND = TorchBackend()


def build_time(fn: Callable[[], object], per_round: int) -> Callable[[], float]:
    """A function that builds ``per_round`` models and returns the mean seconds per build."""

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        return (time.perf_counter() - start) / per_round

    return measure


def alternate(a: Callable[[], float], b: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Median of ``repeats`` measurements of each, taken a, b, a, b... (b first every other round)."""
    ta, tb = [], []
    for i in range(repeats):
        if i % 2:
            tb.append(b())
            ta.append(a())
        else:
            ta.append(a())
            tb.append(b())
    return statistics.median(ta), statistics.median(tb)


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
          steps: int) -> dict[str, object]:  # fmt: skip
    start = time.perf_counter()
    arch = build_architecture(spec)
    validate_s = time.perf_counter() - start
    make_ref(), BACKEND.build(arch)  # warm-up: first-call costs are no part of a build
    per_round = max(1, round(0.1 / build_time(make_ref, 1)()))  # rounds of about 0.1 s
    build_ref, build_ours = alternate(
        build_time(make_ref, per_round), build_time(lambda: BACKEND.build(arch), per_round), builds
    )
    torch.manual_seed(0)
    ref, ours = make_ref(), BACKEND.build(arch)
    ours.load_state_dict(dict(zip(ours.state_dict(), ref.state_dict().values())))
    h, w, c = arch.graph.input.shape
    x, y = torch.randn(batch, c, h, w), torch.randint(0, arch.output_shape[0], (batch,))
    rate_ref, rate_ours = alternate(train_rate(ref, x, y, steps), train_rate(ours, x, y, steps), repeats)
    return {
        "model": name, "batch": batch, "validate_ms": validate_s * 1e3,
        "build_ref_ms": build_ref * 1e3, "build_ours_ms": build_ours * 1e3, "build_ratio": build_ours / build_ref,
        "ref_img_s": rate_ref, "ours_img_s": rate_ours, "throughput_ratio": rate_ours / rate_ref,
    }  # fmt: skip


def table(rows: list[dict[str, object]]) -> str:
    head = (f"{'model':<10} {'batch':>5} {'validate':>9} {'build ref':>10} {'build ours':>11} {'ratio':>6}  "
            f"{'img/s ref':>10} {'img/s ours':>11} {'ratio':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<10} {r['batch']:>5} {r['validate_ms']:>7.1f}ms {r['build_ref_ms']:>8.1f}ms {r['build_ours_ms']:>9.1f}ms "
            f"{r['build_ratio']:>5.2f}x  {r['ref_img_s']:>10.1f} {r['ours_img_s']:>11.1f} {r['throughput_ratio']:>5.3f}x"
        )
    lines.append("targets: build ratio <= 1.2x, throughput ratio >= 0.97x")
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
