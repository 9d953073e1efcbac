"""Training throughput of the PyTorch trainer's step against a minimal hand-written PyTorch loop.

Three contestants train side by side in one process, each its own copy of the same compiled
network from the same initial weights, on the same preprocessed data (one tensor on the device)
and the same batches in the same order, with the spec's optimizer:

* ``hand-written loop``: index the tensor, forward, cross-entropy, backward, ``optimizer.step()``;
* ``harness``: the PyTorch training session as the core loop drives it (``session.batches``:
  the plan's batch and augmentation draws; ``session.step``: learning rate from the schedule,
  label smoothing, L2, parameter groups, epoch metrics on the device);
* ``harness + augmentation``: the same with random crop (zero padding) and flip: random numbers
  drawn on the host from (seed, epoch, batch), two gathers on the device.

They run in interleaved chunks of a few steps (the order rotating every chunk), so a shared,
busy machine slows all three alike; only steps after ``--warmup`` are timed, by wall clock and
(on a CPU) by this process' CPU time. Start-up, validation and checkpoints are not part of a
step and are not timed. Ratios: of the totals (wall and CPU time) and the median over chunks of
the per-chunk wall-time ratio. Targets: harness >= 0.95x the hand-written loop; augmented >= 0.9x
plain.

    python benchmarks/bench_train_torch.py                          # digits, resnet_digits.yaml
    python benchmarks/bench_train_torch.py --threads 1 --steps 400
    python benchmarks/bench_train_torch.py --device gpu --spec examples/resnet20_cifar10.yaml --data CIFAR_DIR
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

import resnet_spec
from resnet_spec.training import data
from resnet_spec.training.batches import batch_indices
from resnet_spec.training.data import Dataset
from resnet_spec.training.job import TrainingJob
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.schedule import learning_rate
from resnet_spec.weights import initial_weights

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "backends"))

from resnet_spec_torch.model import build_module
from resnet_spec_torch.train import TorchSession
from resnet_spec_torch.weights import set_weights

Step = Callable[[int], None]  # run batch b of epoch 0


def tiled(dataset: Dataset, examples: int) -> Dataset:
    x = dataset.train.read(np.arange(len(dataset.train)))
    reps = -(-examples // len(x))
    x_test = dataset.test.read(np.arange(len(dataset.test)))
    return Dataset.from_arrays(dataset.name, np.concatenate([x] * reps), np.concatenate([dataset.train.labels] * reps),
                               x_test, dataset.test.labels, dataset.class_names)  # fmt: skip


def harness(spec: dict[str, Any], dataset: Dataset, device: str, out: Path) -> tuple[Step, torch.device]:
    arch = resnet_spec.build_architecture(spec)
    job = TrainingJob.prepare(arch, dataset, out, spec_data=spec, execution={"device": device}, progress=False)
    session = TorchSession(job)
    batches = session.batches(0, job.plan.steps_per_epoch)

    def step(b: int) -> None:
        session.step(next(batches), learning_rate(job.training, b, job.plan.steps_per_epoch))

    return step, session.setup.device


def hand_written(spec: dict[str, Any], dataset: Dataset, device: torch.device) -> Step:
    arch = resnet_spec.build_architecture(spec)
    training = arch.spec.training
    assert training is not None  # the benchmark's specs have a recipe
    model = build_module(arch)
    set_weights(model, arch, initial_weights(arch, training.seed))
    model.to(device).train()
    settings = training.optimizer
    if settings.kind in ("adam", "adamw"):
        kind = torch.optim.Adam if settings.kind == "adam" else torch.optim.AdamW
        optimizer: torch.optim.Optimizer = kind(model.parameters(), lr=settings.learning_rate,
                                                betas=(settings.beta1, settings.beta2), eps=settings.epsilon,
                                                weight_decay=settings.weight_decay)  # fmt: skip
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=settings.momentum,
                                    nesterov=settings.nesterov and settings.momentum > 0,
                                    weight_decay=settings.weight_decay)  # fmt: skip
    images = dataset.train.read(np.arange(len(dataset.train)))
    preprocessor = Preprocessor.fit(training.preprocessing, images)
    x = torch.from_numpy(preprocessor(images)).permute(0, 3, 1, 2).contiguous().to(device)
    y = torch.from_numpy(dataset.train.labels).to(device)
    order = batch_indices(len(x), training.batch_size, training.seed, 0)
    smoothing = training.loss.label_smoothing

    def step(b: int) -> None:
        index = torch.from_numpy(order[b]).to(device, non_blocking=True)
        loss = F.cross_entropy(model(x[index]), y[index], label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(REPO / "examples" / "resnet_digits.yaml"))
    parser.add_argument("--data", default="digits")
    parser.add_argument("--steps", type=int, default=240, help="timed steps per contestant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--chunk", type=int, default=4, help="steps per turn")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--padding", type=int, default=1, help="random-crop padding of the augmented contestant")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = yaml.safe_load(Path(args.spec).read_text())
    # One epoch holds every timed step; the schedule's value does not change the work of a step.
    spec["training"].update({"validation_split": 0.0, "tensorboard": False, "epochs": 1, "schedule": {"kind": "constant"}})
    spec["training"].pop("iterations", None)
    spec["training"].pop("warmup", None)
    plain = copy.deepcopy(spec)
    plain["training"]["augmentation"] = {"random_crop_padding": 0, "horizontal_flip": False}
    augmented = copy.deepcopy(spec)
    augmented["training"]["augmentation"] = {"random_crop_padding": args.padding, "horizontal_flip": True}
    batch = int(plain["training"]["batch_size"])
    arch = resnet_spec.build_architecture(plain)
    dataset = tiled(data.load(args.data, arch.spec), (args.warmup + args.steps + 1) * batch)

    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
        torch.manual_seed(0)
        harness_step, device = harness(plain, dataset, args.device, Path(tmp, "a"))
        augmented_step, _ = harness(augmented, dataset, args.device, Path(tmp, "b"))
        steps = {"hand-written loop": hand_written(plain, dataset, device), "harness": harness_step,
                 "harness + augmentation": augmented_step}  # fmt: skip
        for step in steps.values():
            for b in range(args.warmup):
                step(b)
        wall = dict.fromkeys(steps, 0.0)
        cpu = dict.fromkeys(steps, 0.0)
        chunks: dict[str, list[float]] = {name: [] for name in steps}  # wall seconds of every chunk
        names = list(steps)
        for turn, first in enumerate(range(args.warmup, args.warmup + args.steps, args.chunk)):
            last = min(first + args.chunk, args.warmup + args.steps)
            for name in names[turn % 3 :] + names[: turn % 3]:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                w, c = time.perf_counter(), time.process_time()
                for b in range(first, last):
                    steps[name](b)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                chunks[name].append(time.perf_counter() - w)
                wall[name] += chunks[name][-1]
                cpu[name] += time.process_time() - c

    images = args.steps * batch
    print(f"spec {Path(args.spec).name}, data {args.data}, batch {batch}: {args.steps} timed steps per contestant "
          f"after {args.warmup}, interleaved in chunks of {args.chunk}; torch {torch.__version__} on {device.type} "
          f"({torch.get_num_threads()} threads)")  # fmt: skip
    clocks = [("wall", wall)] + ([("cpu", cpu)] if device.type == "cpu" else [])
    print(f"{'contestant':24s}" + "".join(f" {clock + ' img/s':>14s}" for clock, _ in clocks) + f" {'median/chunk':>14s}")
    for name in steps:
        print(f"{name:24s}" + "".join(f" {images / times[name]:14.0f}" for _, times in clocks))
    for label, tested, base, target in (("harness / hand-written", "harness", "hand-written loop", 0.95),
                                ("augmented / plain", "harness + augmentation", "harness", 0.9)):  # fmt: skip
        ratios = [times[base] / times[tested] for _, times in clocks]
        # The same steps' chunk times side by side: a burst of load on the shared machine hits one
        # chunk of each contestant, not one contestant, so the median ratio is the steadiest figure.
        median = statistics.median(b / t for t, b in zip(chunks[tested], chunks[base]))
        verdict = "ok" if min(ratios) >= target else ("ok on cpu time" if max(ratios) >= target else "BELOW")
        print(f"{label:24s}" + "".join(f" {r:14.3f}" for r in ratios) + f" {median:14.3f}"
              f"   target >= {target:.2f}: {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
