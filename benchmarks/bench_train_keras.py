"""Throughput of the Keras trainer (resnet_spec_keras.train) against a minimal hand-written
Keras training loop, and of its input pipeline with and without augmentation.

    python benchmarks/bench_train_keras.py                 # resnet_digits on digits
    python benchmarks/bench_train_keras.py --rounds 120 --block 5

Variants (images per second of training steps):

* ``minimal loop``: the same model (built from the same spec by the backend, same initial
  weights), the same preprocessed data, batch size and batch order, ``keras.optimizers.Adam``
  (or ``SGD``), a ``tf.function`` step with a ``GradientTape``: the least a hand-written Keras
  loop does;
* ``harness``: the Keras training session as the core loop drives it (``session.batches``: the
  plan's batch selection and augmentation draws; ``session.step``: the learning rate from the
  schedule, the step with its metrics) on a session set up exactly as ``loop.train`` sets it up;
* ``harness + augmentation``: the same with random crops (padding 1) and flips on;
* ``harness end to end`` (information): a whole ``loop.train`` run's wall time per epoch,
  including validation, logging, the curves plot and the atomic checkpoint.

The machine may be shared (other processes take the CPUs in bursts), so after two warm-up
epochs each (tracing, both batch shapes) the variants alternate in blocks of ``--block`` steps,
the order rotating every round. Reported per variant: total images / total wall seconds, the
median over rounds of the per-round wall-time ratio, and images per CPU-second of the process
(all its threads): the most stable measure on a shared machine, where wall time includes
waiting for CPUs other processes hold. The harness's per-block costs (a progress bar object,
the epoch's permutation) are paid every block here instead of once per epoch, which if anything
understates it (a new batch iterator every block, here). Targets: harness / minimal >= 0.95, augmentation / no augmentation >= 0.9.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def job_for(spec: dict[str, Any], out: Path) -> Any:
    import resnet_spec
    from resnet_spec.training import data
    from resnet_spec.training.job import TrainingJob

    arch = resnet_spec.build_architecture(spec)
    return TrainingJob.prepare(arch, data.load("digits", arch.spec), out, spec_data=spec, progress=False)


class Harness:
    """A Keras training session set up as ``loop.train`` sets it up; ``block()`` runs and times
    steps as the core loop runs them."""

    def __init__(self, spec: dict[str, Any], out: Path):
        from resnet_spec.training.commands import trainer_for

        self.job = job_for(spec, out)
        self.session = trainer_for("keras").training_session(self.job)
        self.images = len(self.job.train)
        self.steps_per_epoch = self.job.plan.steps_per_epoch
        self.position = 0

    def block(self, steps: int) -> tuple[float, float, int]:
        """``steps`` steps (fewer at an epoch's end): (seconds, CPU seconds of the process, images)."""
        from resnet_spec.training.schedule import learning_rate

        spe = self.steps_per_epoch
        first = self.position
        stop = min(first + steps, (first // spe + 1) * spe)
        images = sum(len(self.job.plan.shard(s)) for s in range(first, stop))
        start, cpu = time.perf_counter(), time.process_time()
        for step, batch in zip(range(first, stop), self.session.batches(first, stop)):
            self.session.step(batch, learning_rate(self.job.training, step, spe))
        self.session.running_sums()  # reading the metric sums waits for the steps
        self.position = stop
        return time.perf_counter() - start, time.process_time() - cpu, images


class Minimal:
    """A hand-written loop over the same model, data, batch size and order."""

    def __init__(self, spec: dict[str, Any], out: Path):
        import keras
        import tensorflow as tf

        from resnet_spec.backends import get_backend
        from resnet_spec.weights import initial_weights

        job = job_for(spec, out)
        self.arch, self.training = job.arch, job.arch.spec.training
        backend: Any = get_backend("keras")  # WeightAccess too
        model = backend.build(self.arch)
        backend.set_weights(model, self.arch, initial_weights(self.arch, self.training.seed))
        settings = self.training.optimizer
        if settings.kind == "sgd":
            optimizer = keras.optimizers.SGD(
                settings.learning_rate, momentum=settings.momentum, nesterov=settings.nesterov
            )
        else:
            optimizer = keras.optimizers.Adam(settings.learning_rate, settings.beta1, settings.beta2, settings.epsilon)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.x, self.y = job.preprocessor(job.train.read(np.arange(len(job.train)))), job.train.labels
        self.images, self.count = len(self.x), 0

        @tf.function(reduce_retracing=True)
        def step(images: Any, labels: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(images, training=True)) + tf.add_n(model.losses or [0.0])
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        self.step = step

    def block(self, steps: int) -> tuple[float, float, int]:
        """``steps`` steps of the loop (fewer at an epoch's end): (seconds, CPU seconds, images)."""
        from resnet_spec.training.batches import batch_indices

        spe = -(-len(self.x) // self.training.batch_size)
        epoch, first = divmod(self.count, spe)
        order = batch_indices(len(self.x), self.training.batch_size, self.training.seed, epoch)
        chosen = order[first : first + steps]
        start, cpu = time.perf_counter(), time.process_time()
        for indices in chosen:
            self.step(self.x[indices], self.y[indices])
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        self.count += len(chosen)
        return seconds, cpu_seconds, sum(len(i) for i in chosen)


def end_to_end(spec: dict[str, Any], epochs: int) -> float:
    """images/s of a whole loop.train run, epochs after the first (information)."""
    from resnet_spec.training import loop
    from resnet_spec.training.commands import trainer_for

    spec = copy.deepcopy(spec)
    spec["training"]["epochs"] = epochs
    with tempfile.TemporaryDirectory() as tmp:
        job = job_for(spec, Path(tmp) / "run")
        ends: list[float] = []
        log_epoch = job.run_dir.log_epoch

        def timed(row: dict[str, Any]) -> None:
            log_epoch(row)
            ends.append(time.perf_counter())

        job.run_dir.log_epoch = timed  # type: ignore[method-assign]
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            loop.train(trainer_for("keras"), job)
        return len(job.train) * (len(ends) - 1) / (ends[-1] - ends[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(ROOT / "examples" / "resnet_digits.yaml"))
    parser.add_argument("--rounds", type=int, default=60, help="measured blocks per variant")
    parser.add_argument("--block", type=int, default=5, help="steps per block")
    parser.add_argument("--end-to-end-epochs", type=int, default=5)
    args = parser.parse_args()
    base = yaml.safe_load(Path(args.spec).read_text())
    base["training"].update(epochs=10_000, tensorboard=False)  # never reached: epochs are run one by one
    plain = copy.deepcopy(base)
    plain["training"]["augmentation"] = {"random_crop_padding": 0, "horizontal_flip": False}
    augmented = copy.deepcopy(base)
    augmented["training"]["augmentation"] = {"random_crop_padding": 1, "horizontal_flip": True}

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        variants: dict[str, Any] = {
            "minimal": Minimal(plain, Path(tmp) / "m"),
            "harness": Harness(plain, Path(tmp) / "h"),
            "augmented": Harness(augmented, Path(tmp) / "a"),
        }
        steps_per_epoch = variants["harness"].steps_per_epoch
        for variant in variants.values():  # warm-up: one epoch each (tracing, both batch shapes)
            for _ in range(2):
                variant.block(steps_per_epoch)
        timed: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        names = list(variants)
        for round_index in range(args.rounds):
            for name in names[round_index % 3 :] + names[: round_index % 3]:
                timed[name].append(variants[name].block(args.block))
    wall = {name: sum(n for _, _, n in rows) / sum(t for t, _, _ in rows) for name, rows in timed.items()}
    cpu = {name: sum(n for _, _, n in rows) / sum(c for _, c, _ in rows) for name, rows in timed.items()}
    speed = {name: [n / t for t, _, n in rows] for name, rows in timed.items()}
    per_round = {
        "harness": statistics.median(h / m for h, m in zip(speed["harness"], speed["minimal"])),
        "augmented": statistics.median(a / h for a, h in zip(speed["augmented"], speed["harness"])),
    }
    images = variants["minimal"].images
    full = end_to_end(plain, args.end_to_end_epochs)
    batch = base["training"]["batch_size"]
    print(f"spec {Path(args.spec).name}, data digits ({images} training images), batch {batch}; {args.rounds} rounds "
          f"of {args.block} steps per variant, alternating; TensorFlow {tf.__version__}, {os.cpu_count()} CPUs")  # fmt: skip
    print(
        f"{'variant':31s} {'wall img/s':>10s} {'ratio':>6s} {'median/round':>12s} {'CPU img/s':>10s} {'ratio':>6s}  target"
    )
    rows = [("minimal hand-written Keras loop", "minimal", "minimal", None, ""),
            ("harness (trainer epoch loop)", "harness", "minimal", "harness", ">= 0.95 x minimal"),
            ("harness + augmentation", "augmented", "harness", "augmented", ">= 0.90 x harness")]  # fmt: skip
    for label, name, base_name, key, target in rows:
        median = f"{per_round[key]:12.3f}" if key else f"{'':12s}"
        print(f"{label:31s} {wall[name]:10.0f} {wall[name] / wall[base_name]:6.3f} {median} {cpu[name]:10.0f} "
              f"{cpu[name] / cpu[base_name]:6.3f}  {target}")  # fmt: skip
    print(f"{'harness end to end (info)':31s} {full:10.0f} {full / wall['minimal']:6.3f}  "
          "(loop.train: + validation, logging, plot, checkpoint per epoch)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
