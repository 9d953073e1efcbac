"""Benchmark the Keras backend against hand-written Keras models (a script, not a test).

    .venv/bin/python benchmarks/bench_keras.py [--rounds 5] [--steps 10]

For ResNet-20 (32x32, batch 128) the reference is ``benchmarks/keras_reference.py``; for
ResNet-50 (224x224, batch 8 on CPU) it is ``keras.applications.ResNet50(weights=None)``.
Measured in one process, alternating ours and the reference round by round so that load from
other processes hits both alike:

* build: ``KerasBackend.build(arch)`` (the spec already validated; validation is shown
  separately) vs calling the reference constructor; median of ``--rounds`` builds;
* training throughput: images/s of ``train_on_batch`` (SGD with momentum, cross-entropy),
  warm-up steps excluded, from the median of ``--rounds`` x ``--steps`` step times, the two
  models' steps interleaved.

Ratios are medians of paired measurements (each build or step of ours next to one of the
reference), which cancels most of the drift when other processes share the CPUs. Targets:
build ratio <= 1.2, throughput ratio >= 0.97.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from resnet_spec.backends import get_backend
from resnet_spec.pipeline import build_architecture

HERE = Path(__file__).resolve().parent


def _reference_module():
    spec = importlib.util.spec_from_file_location("keras_reference", HERE / "keras_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resnet50_spec() -> dict:
    """keras.applications.ResNet50 (v1, include_top) as a spec."""
    stages = [
        {"block": "bottleneck", "blocks": n, "filters": f, "stride": s, "stride_placement": "first_1x1",
         "shortcut": {"kind": "projection", "norm": True, "order": "shortcut_first"}}
        for n, f, s in ((3, 256, 1), (4, 512, 2), (6, 1024, 2), (3, 2048, 2))
    ]  # fmt: skip
    return {
        "version": 1, "name": "keras_applications_resnet50",
        "input": {"height": 224, "width": 224, "channels": 3}, "classes": 1000,
        "defaults": {"conv_bias": True, "padding": "same", "initializer": "glorot_uniform",
                     "norm": {"epsilon": 1.001e-5, "running_stats_decay": 0.99, "running_variance": "biased"}},
        "stem": [
            {"type": "zero_pad", "padding": 3},
            {"type": "conv", "filters": 64, "kernel_size": 7, "stride": 2, "padding": "valid"},
            {"type": "norm"}, {"type": "activation", "function": "relu"},
            {"type": "zero_pad", "padding": 1},
            {"type": "max_pool", "pool_size": 3, "stride": 2, "padding": "valid"},
        ],
        "stages": stages,
        "head": {"layers": [{"type": "global_avg_pool"}], "output": "softmax"},
    }  # fmt: skip


def median_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare_builds(build_ours, build_ref, rounds: int) -> tuple[float, float, float]:
    """Median build seconds of each, and the median of the paired ratios ours / reference
    (builds alternate, so a burst of load from another process lands on both of a pair)."""
    ours, ref = [], []
    for _ in range(rounds):
        keras.backend.clear_session()
        ours.append(median_seconds(build_ours, 1))
        keras.backend.clear_session()
        ref.append(median_seconds(build_ref, 1))
    return statistics.median(ours), statistics.median(ref), statistics.median(o / r for o, r in zip(ours, ref))


def compile_for_training(model: keras.Model, from_logits: bool) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
    )
    return model


def compare_throughput(ours, ref, x, y, rounds: int, steps: int, warmup: int = 3) -> tuple[float, float, float]:
    """Images/s of each from the median step time, and the median of the paired step-time
    ratios reference / ours. Steps alternate between the two models (and which goes first),
    so a burst of load from another process lands on both steps of a pair."""
    for model in (ours, ref):
        for _ in range(warmup):  # tracing and the first allocations are not throughput
            model.train_on_batch(x, y)
    times: dict[int, list[float]] = {id(ours): [], id(ref): []}
    for step in range(rounds * steps):
        for model in (ours, ref) if step % 2 == 0 else (ref, ours):
            start = time.perf_counter()
            model.train_on_batch(x, y)  # returns numpy logs: the step has finished
            times[id(model)].append(time.perf_counter() - start)
    mine, theirs = times[id(ours)], times[id(ref)]
    paired = statistics.median(r / o for o, r in zip(mine, theirs))
    return len(x) / statistics.median(mine), len(x) / statistics.median(theirs), paired


def bench(label, spec, make_ref, batch, from_logits, args):
    backend = get_backend("keras")
    validate_s = median_seconds(lambda: build_architecture(spec), 3)
    arch = build_architecture(spec)
    build_ours, build_ref, build_ratio = compare_builds(lambda: backend.build(arch), make_ref, args.rounds)
    keras.backend.clear_session()
    ours = compile_for_training(backend.build(arch), from_logits)
    ref = compile_for_training(make_ref(), from_logits)
    if ours.count_params() != ref.count_params():
        sys.exit(f"{label}: parameter counts differ ({ours.count_params()} vs {ref.count_params()})")
    ref.set_weights(ours.get_weights())  # same layer order: identical starting point
    rng = np.random.default_rng(0)
    h, w, c = arch.graph.input.shape
    x = rng.normal(size=(batch, h, w, c)).astype("float32")
    y = rng.integers(0, spec["classes"], size=(batch,))
    ips_ours, ips_ref, ips_ratio = compare_throughput(ours, ref, x, y, args.rounds, args.steps)
    return {
        "model": label, "batch": batch, "validate_ms": validate_s * 1e3,
        "build_ours_ms": build_ours * 1e3, "build_ref_ms": build_ref * 1e3, "build_ratio": build_ratio,
        "ips_ours": ips_ours, "ips_ref": ips_ref, "ips_ratio": ips_ratio,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", choices=["resnet20", "resnet50"])
    args = parser.parse_args()
    ref = _reference_module()
    rows = []
    if args.only in (None, "resnet20"):
        rows.append(bench("ResNet-20", ref.resnet_v1_spec(20), lambda: ref.resnet_v1(20), 128, True, args))
    if args.only in (None, "resnet50"):
        make = lambda: keras.applications.ResNet50(weights=None, include_top=True, input_shape=(224, 224, 3))
        rows.append(bench("ResNet-50", resnet50_spec(), make, 8, False, args))
    print(f"keras {keras.__version__}, {os.cpu_count()} CPUs, rounds={args.rounds}, steps={args.steps}")
    header = "| model | batch | validate ms | build ours ms | build ref ms | build ratio (<=1.2) | ours img/s | ref img/s | throughput ratio (>=0.97) |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['validate_ms']:.1f} | {r['build_ours_ms']:.0f} | {r['build_ref_ms']:.0f} "
            f"| {r['build_ratio']:.3f} | {r['ips_ours']:.2f} | {r['ips_ref']:.2f} | {r['ips_ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
