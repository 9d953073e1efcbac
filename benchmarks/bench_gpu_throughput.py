"""Training throughput (images/s) of the harness on a GPU: ResNet-50 at 224x224 and ResNet-20 at
32x32, with either backend's training session, on synthetic data in memory or (``--data``) on
an image folder read by the backend's input pipeline.

Each model is trained by its session's step as the core loop drives it (``session.batches`` and
``session.step`` of ``resnet_spec_torch.train.TorchSession`` or
``resnet_spec_keras.train.KerasSession``: schedule, loss, L2, optimizer, metrics, the recipe's
device augmentation). Synthetic data: random images of the spec's input shape in a pool of a few
batches, held in memory (random-resized crops and resizing are dropped from the recipe: there is
nothing to crop). ``--data FOLDER`` (an ImageNet-layout folder, ``FOLDER/train/<class>/*.JPEG``):
the recipe as it is, the images decoded, cropped and resized by ``--workers`` DataLoader processes
or tf.data threads. ResNet-50 trains with ``examples/resnet50.yaml``'s ImageNet recipe, ResNet-20
with ``examples/resnet20_cifar10.yaml``'s (pad-4 crop and flip). After ``--warmup`` untimed steps
(compilation, cuDNN autotuning, the pipeline filling), ``--steps`` steps are timed in chunks of
``--chunk``, the device synchronized at each chunk's ends; the report gives total images / total
seconds and the median over chunks.

    python benchmarks/bench_gpu_throughput.py --backend torch --amp bfloat16 --channels-last --compile
    python benchmarks/bench_gpu_throughput.py --backend keras --amp bfloat16 --jit
    python benchmarks/bench_gpu_throughput.py --backend torch --model resnet50 --amp bfloat16 --channels-last \\
        --data /data/imagenet --workers 16          # the input pipeline included
    python benchmarks/bench_gpu_throughput.py --backend torch --model resnet20 --steps 4 --warmup 1 \\
        --batch-size 8 --device cpu                   # a CPU smoke run (tests/test_bench_gpu.py)

One backend per process: TensorFlow reserves most of the GPU's memory for itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "backends"))

import resnet_spec
from resnet_spec.training import data
from resnet_spec.training.data import Dataset
from resnet_spec.training.job import TrainingJob
from resnet_spec.training.run_dir import RunDir
from resnet_spec.training.schedule import learning_rate

MODELS = {"resnet50": ("resnet50.yaml", 256), "resnet20": ("resnet20_cifar10.yaml", 128)}  # spec, default batch
POOL_BATCHES = 4  # distinct synthetic batches, reused in turn

Step = Callable[[int], None]  # run the i-th step
Sync = Callable[[], None]  # wait until the device has finished


def spec_for(model: str, batch_size: int | None, synthetic: bool) -> dict[str, Any]:
    file, default_batch = MODELS[model]
    spec = yaml.safe_load((REPO / "examples" / file).read_text())
    training = spec["training"]
    training.update(batch_size=batch_size or default_batch, validation_split=0.0, tensorboard=False)
    if synthetic:  # random arrays of the input's size: no decoding, nothing to crop or resize
        training.get("augmentation", {}).pop("random_resized_crop", None)
        training.get("preprocessing", {}).pop("resize", None)
    return spec


def synthetic(arch: Any, examples: int) -> Dataset:
    shape = (arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (examples, *shape), dtype=np.uint8)
    y = rng.integers(0, arch.spec.classes, examples).astype(np.int64)
    return Dataset.from_arrays("synthetic", x, y, x[:0], y[:0])


def job_for(spec: dict[str, Any], overrides: list[str], execution: dict[str, Any], out: Path,
            folder: str | None) -> TrainingJob:  # fmt: skip
    arch = resnet_spec.build_architecture(spec, overrides=overrides)
    training = arch.spec.training
    assert training is not None  # spec_for always gives one
    dataset = data.load(folder, arch.spec) if folder else synthetic(arch, POOL_BATCHES * training.batch_size)
    return TrainingJob.prepare(arch, dataset, RunDir(out, tensorboard=False), spec_data=spec, execution=execution,
                               progress=False)  # fmt: skip


def session_steps(job: TrainingJob, session: Any, total: int) -> Step:
    """The i-th step as the core loop runs it (the pipeline's next batch, the schedule's rate)."""
    batches = session.batches(0, total)
    spe = job.plan.steps_per_epoch

    def step(i: int) -> None:
        session.step(next(batches), learning_rate(job.training, i, spe))

    return step


def torch_steps(job: TrainingJob, total: int) -> tuple[Step, Sync, str]:
    import torch
    from resnet_spec_torch.train import TorchSession

    session = TorchSession(job)
    device = session.setup.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    notes = f"; {'; '.join(session.notes)}" if session.notes else ""
    return session_steps(job, session, total), sync, f"torch {torch.__version__}, {name}{notes}"


def keras_steps(job: TrainingJob, total: int) -> tuple[Step, Sync, str]:
    import tensorflow as tf
    from resnet_spec_keras.train import KerasSession

    session = KerasSession(job)

    def sync() -> None:
        session.running_sums()  # reading the metric sums waits for the steps

    gpus = tf.config.list_physical_devices("GPU")
    name = f"{len(gpus)} GPU(s)" if gpus and job.execution.device != "cpu" else "CPU"
    return session_steps(job, session, total), sync, f"TensorFlow {tf.__version__}, {name}"


def measure(step: Step, sync: Sync, warmup: int, steps: int, chunk: int, batch: int) -> tuple[float, float]:
    """(images/s over all timed steps, median images/s over chunks)."""
    for i in range(warmup):
        step(i)
    sync()
    seconds = []
    for first in range(warmup, warmup + steps, chunk):
        last = min(first + chunk, warmup + steps)
        start = time.perf_counter()
        for i in range(first, last):
            step(i)
        sync()
        seconds.append((time.perf_counter() - start, last - first))
    total = sum(t for t, _ in seconds)
    return steps * batch / total, statistics.median(n * batch / t for t, n in seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("torch", "keras"), default="torch")
    parser.add_argument("--model", choices=("resnet50", "resnet20", "both"), default="both")
    parser.add_argument("--amp", choices=("none", "float16", "bfloat16"), default="none",
                        help="mixed precision (torch.autocast / Keras mixed policy)")  # fmt: skip
    parser.add_argument("--channels-last", action="store_true", help="torch.channels_last (a no-op for Keras)")
    parser.add_argument("--compile", "--jit", dest="compile", action="store_true",
                        help="torch.compile / XLA jit_compile of the training step")  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--batch-size", type=int, help="default: 256 for ResNet-50, the recipe's 128 for ResNet-20")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--chunk", type=int, default=10, help="steps per timed chunk")
    parser.add_argument("--data", metavar="FOLDER", help="an image folder read by the input pipeline (default: synthetic)")
    parser.add_argument("--workers", type=int, help="input-pipeline workers with --data (default: one per core, up to 8)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="spec override, validated as on the command line (e.g. input.height=64)")  # fmt: skip
    args = parser.parse_args(argv)
    execution = {"device": args.device, "mixed_precision": args.amp, "channels_last": args.channels_last,
                 "compile": args.compile, "workers": args.workers}  # fmt: skip
    build = torch_steps if args.backend == "torch" else keras_steps
    models = list(MODELS) if args.model == "both" else [args.model]
    print(f"{'model':10s} {'input':>11s} {'batch':>6s} {'img/s':>9s} {'median':>9s}  backend, device, switches")
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            spec = spec_for(model, args.batch_size, synthetic=args.data is None)
            job = job_for(spec, args.overrides, execution, Path(tmp, model), args.data)
            step, sync, where = build(job, args.warmup + args.steps)
            batch = job.training.batch_size
            total, median = measure(step, sync, args.warmup, args.steps, args.chunk, batch)
            size = job.arch.spec.input
            switches = ", ".join(f"{k}={v}" for k, v in execution.items() if v is not None)
            switches += f"; data {args.data or 'synthetic'}"
            print(f"{model:10s} {f'{size.height}x{size.width}x{size.channels}':>11s} {batch:6d} {total:9.1f} "
                  f"{median:9.1f}  {where}; {switches}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
