"""Input pipelines at scale: throughput against each framework's plain pipeline, memory against
the data set's size, and training throughput from JPEG files against tensors in memory.

Parts (``--part``; each backend measured in its own processes, ratios taken within one run):

* ``pipelines``: a generated folder of ``--images`` JPEGs at 256x256 (smooth stripes and noise,
  quality 90, 10 classes) read at 224x224 for training (random-resized crop, flip, ImageNet
  normalization) in batches of ``--batch`` by ``--workers`` workers:

  - PyTorch: the trainer's pipeline (``resnet_spec_torch.pipeline``: ``ExampleReader`` over the
    plan's shards, a ``DataLoader``) against torchvision's ``ImageFolder`` + ``RandomResizedCrop``
    + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` in a ``DataLoader`` (shuffled) with
    the same workers;
  - Keras: the trainer's tf.data pipeline (``resnet_spec_keras.pipeline.Reader``) against a plain
    tf.data pipeline (``list_files``, ``read_file``, ``decode_jpeg``,
    ``sample_distorted_bounding_box`` + crop, ``resize`` to 224, flip, normalization,
    ``map(num_parallel_calls=workers)``, ``batch``, ``prefetch``);

  the contestants alternate in ``--rounds`` rounds, the order rotating; each round starts a fresh
  iterator, waits for its first batch (start-up: worker processes, tracing; paid once per run by
  the trainer's pipeline, which spans the whole run) and times the next ``--batches``; reported:
  images/s over all rounds, the median per-round ratio, and CPU seconds (the process and its
  worker processes, start-up excluded). Target: ours / theirs >= 0.95.

* ``memory``: peak resident memory while the trainer's pipeline reads one whole epoch of a
  folder of 2,000 and of 20,000 such images (``--small``, ``--large``), each in a fresh process:
  the process' own peak and that of its largest input worker. Target: 20,000 / 2,000 <= 1.1.

* ``train``: training throughput of the digits network (``examples/resnet_digits.yaml``) from a
  folder of the digits as 8x8 JPEG files (``--workers`` DataLoader workers / tf.data threads)
  against the same decoded images as tensors in memory, both through the trainer's session as the
  core loop drives it; chunks of ``--chunk`` steps alternate over ``--rounds`` rounds. The
  training process' framework runs its operations on ``--threads`` intra-op threads (default 1,
  in both backends, leaving the input workers a core; 0: the framework's own choice). Target:
  folder / memory >= 0.9.

    python benchmarks/bench_data.py --part pipelines --workers 2
    python benchmarks/bench_data.py --part memory
    python benchmarks/bench_data.py --part train --threads 1

Generated folders are kept under ``--cache`` (default: the system's temporary folder) and reused.
On a shared machine, compare the ratios and CPU times; the wall times include other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "backends"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASSES = 10
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ---------------------------------------------------------------------------- data


def jpeg_folder(root: Path, images: int, size: int = 256) -> Path:
    """``root/train/class<k>/*.jpg`` (and a small ``test``), written once."""
    done = root / ".complete"
    if done.exists():
        return root
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for part, count in (("train", images), ("test", CLASSES)):
        for i in range(count):
            kind = i % CLASSES
            folder = root / part / f"class{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            base = np.sin(xx / (3 + kind) + i) * 60 + np.cos(yy / (4 + kind)) * 50 + 128
            pixels = np.clip(base[..., None] + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", "JPEG", quality=90)
    done.write_text("")
    return root


def digits_jpeg_folder(root: Path) -> Path:
    done = root / ".complete"
    if done.exists():
        return root
    sys.path.insert(0, str(REPO / "tests"))
    from image_folders import digits_folder
    from PIL import Image

    digits_folder(root)
    for png in root.rglob("*.png"):  # the same images as JPEG files
        Image.open(png).save(png.with_suffix(".jpg"), "JPEG", quality=95)
        png.unlink()
    done.write_text("")
    return root


def imagenet_spec(batch: int, workers: int) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(json.dumps({
        "version": 1, "input": {"height": 224, "width": 224, "channels": 3}, "classes": CLASSES,
        "stem": [{"type": "conv", "filters": 4, "kernel_size": 3}],
        "stages": [{"block": "basic", "blocks": 1, "filters": 4}],
        "training": {"batch_size": batch, "epochs": 1, "validation_split": 0.0, "tensorboard": False,
                     "augmentation": {"random_resized_crop": {}, "horizontal_flip": True},
                     "preprocessing": {"mode": "mean_std", "mean": MEAN, "std": STD, "resize": {"shorter_side": 256}},
                     "execution": {"workers": workers}},
    }))  # fmt: skip
    return spec


def job_for(spec: dict[str, Any], folder: Path) -> Any:
    import resnet_spec
    from resnet_spec.training import data
    from resnet_spec.training.job import TrainingJob

    arch = resnet_spec.build_architecture(spec)
    return TrainingJob.prepare(arch, data.load(str(folder), arch.spec), Path(tempfile.mkdtemp()) / "run", progress=False)


def _descendants(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in children.read_text().split()]
        except OSError:
            pass
    return found + [d for child in found for d in _descendants(child)]


def cpu_seconds() -> float:
    """CPU seconds of this process and all its children (input workers), reaped or alive."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError):
            pass  # it has just exited: the reaped children's times hold it once it is waited for
    return total


# ---------------------------------------------------------------------------- contestants


def torch_contestants(folder: Path, batch: int, workers: int) -> dict[str, Any]:
    """name -> function(batches) -> (images, seconds, cpu seconds)."""
    import torch
    from resnet_spec_torch import pipeline

    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision
    from torchvision import transforms

    job = job_for(imagenet_spec(batch, workers), folder)
    geometry = job.geometry(job.train, train=True)
    reader = pipeline.ExampleReader(job.train, geometry, job.preprocessor)
    reference = torchvision.datasets.ImageFolder(str(folder / "train"), transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(MEAN, STD)]))  # fmt: skip
    state = {"step": 0}

    def ours(batches: int) -> tuple[int, float, float]:
        start_step = state["step"] % job.plan.steps_per_epoch
        stop = min(start_step + batches + 1, job.plan.steps_per_epoch)
        loader = pipeline.loader(reader, pipeline.PlanSampler(job.plan, start_step, stop, 0, 1), workers,
                                 torch.device("cpu"))  # fmt: skip
        state["step"] = stop
        return _drain(iter(loader), stop - start_step - 1)

    def theirs(batches: int) -> tuple[int, float, float]:
        loader = torch.utils.data.DataLoader(reference, batch_size=batch, shuffle=True, num_workers=workers,
                                             prefetch_factor=pipeline.PREFETCH if workers else None)  # fmt: skip
        return _drain(iter(loader), batches)

    return {"resnet-spec DataLoader pipeline": ours, "torchvision ImageFolder + DataLoader": theirs}


def _drain(iterator: Any, batches: int) -> tuple[int, float, float]:
    """(images, seconds, CPU seconds) of ``batches`` batches after the first, which is not timed:
    it holds the pipeline's start-up (worker processes, tracing), paid once per run."""
    next(iterator)
    start, cpu = time.perf_counter(), cpu_seconds()
    images = 0
    for _ in range(batches):
        item = next(iterator)
        images += len(item[0] if isinstance(item, (tuple, list)) else item)  # (images, labels, ...) or images
    seconds = time.perf_counter() - start
    used = cpu_seconds() - cpu
    del iterator  # a DataLoader iterator stops its workers
    return images, seconds, used


def keras_contestants(folder: Path, batch: int, workers: int) -> dict[str, Any]:
    import tensorflow as tf
    from resnet_spec_keras import pipeline

    job = job_for(imagenet_spec(batch, workers), folder)
    reader = pipeline.Reader(job.train, job.geometry(job.train, train=True), job.preprocessor, workers)
    mean, std = tf.constant(MEAN) * 255.0, tf.constant(STD) * 255.0
    state = {"step": 0}

    def load(path: tf.Tensor) -> tf.Tensor:
        contents = tf.io.read_file(path)
        image = tf.io.decode_jpeg(contents, channels=3)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image), tf.zeros([0, 0, 4]), min_object_covered=0.0, aspect_ratio_range=(0.75, 4 / 3),
            area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)  # fmt: skip
        crop = tf.slice(image, begin, size)
        resized = tf.image.resize(crop, (224, 224), antialias=True)
        return (tf.image.random_flip_left_right(resized) - mean) / std

    def ours(batches: int) -> tuple[int, float, float]:
        start_step = state["step"] % job.plan.steps_per_epoch
        stop = min(start_step + batches + 1, job.plan.steps_per_epoch)
        state["step"] = stop
        return _drain(iter(reader.training(job.plan, start_step, stop, [0], 1)), stop - start_step - 1)

    def theirs(batches: int) -> tuple[int, float, float]:
        files = tf.data.Dataset.list_files(str(folder / "train" / "*" / "*.jpg"), shuffle=True)
        dataset = files.map(load, num_parallel_calls=workers).batch(batch).prefetch(tf.data.AUTOTUNE)
        return _drain(iter(dataset), batches)

    return {"resnet-spec tf.data pipeline": ours, "plain tf.data pipeline": theirs}


def pipelines(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    folder = jpeg_folder(args.cache / f"jpeg-{args.images}", args.images)
    build = torch_contestants if backend == "torch" else keras_contestants
    contestants = build(folder, args.batch, args.workers)
    names = list(contestants)
    for function in contestants.values():  # warm-up: imports, first decode, tracing
        function(1)
    rows: dict[str, list[tuple[int, float, float]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names[round_index % 2 :] + names[: round_index % 2]:
            rows[name].append(contestants[name](args.batches))
    return {"folder": str(folder), "rows": rows, "names": names}


# ---------------------------------------------------------------------------- memory


def memory(args: argparse.Namespace, backend: str, images: int) -> dict[str, Any]:
    """Peak RSS while reading one epoch of ``images`` JPEGs (in this fresh process)."""
    folder = jpeg_folder(args.cache / f"jpeg-{images}", images)
    job = job_for(imagenet_spec(args.batch, args.workers), folder)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    steps = job.plan.steps_per_epoch
    if backend == "torch":
        import torch
        from resnet_spec_torch import pipeline

        examples = pipeline.ExampleReader(job.train, job.geometry(job.train, train=True), job.preprocessor)
        loader = pipeline.loader(examples, pipeline.PlanSampler(job.plan, 0, steps, 0, 1), args.workers, torch.device("cpu"))
        seen = sum(len(batch) for batch, _ in loader)
    else:
        from resnet_spec_keras import pipeline as kp

        reader = kp.Reader(job.train, job.geometry(job.train, train=True), job.preprocessor, args.workers)
        seen = sum(int(batch.shape[0]) for batch, _, _ in reader.training(job.plan, 0, steps, [0], 1))
    seconds = time.perf_counter() - start
    return {"images": seen, "seconds": seconds, "before_mib": before / 1024,
            "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}  # fmt: skip


# ---------------------------------------------------------------------------- training


def training(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    import yaml

    import resnet_spec
    from resnet_spec.training import data
    from resnet_spec.training.commands import trainer_for
    from resnet_spec.training.data import Dataset
    from resnet_spec.training.job import TrainingJob
    from resnet_spec.training.schedule import learning_rate

    if backend == "torch" and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if backend == "keras" and args.threads:  # the same one thread for the step, in TensorFlow's terms
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    folder = digits_jpeg_folder(args.cache / "digits-jpeg")
    spec = yaml.safe_load((REPO / "examples" / "resnet_digits.yaml").read_text())
    spec["training"].update(epochs=1000, validation_split=0.0, tensorboard=False,
                            preprocessing={"mode": "scale", "scale": 1 / 255}, execution={"workers": args.workers})  # fmt: skip
    arch = resnet_spec.build_architecture(spec)
    files = data.load(str(folder), arch.spec)
    every = np.arange(len(files.train))
    decoded = np.stack([files.train.decode(int(i), 1) for i in every])
    in_memory = Dataset.from_arrays("digits", decoded, files.train.labels, decoded[:0], files.train.labels[:0])
    trainer = trainer_for(backend)
    total = args.warmup + args.rounds * args.chunk
    contestants = {}
    for name, dataset in (("tensors in memory", in_memory), ("JPEG folder", files)):
        job = TrainingJob.prepare(arch, dataset, Path(tempfile.mkdtemp()) / "run", progress=False)
        session = trainer.training_session(job)
        contestants[name] = (job, session, session.batches(0, total))
    position = dict.fromkeys(contestants, 0)

    own: dict[str, float] = dict.fromkeys(contestants, 0.0)  # CPU of the training process alone

    def run(name: str, steps: int) -> tuple[int, float, float]:
        job, session, batches = contestants[name]
        start, cpu, mine = time.perf_counter(), cpu_seconds(), time.process_time()
        images = 0
        for _ in range(steps):
            batch = next(batches)
            step = position[name]
            session.step(batch, learning_rate(job.training, step, job.plan.steps_per_epoch))
            images += len(job.plan.shard(step))
            position[name] += 1
        session.running_sums()  # wait for the steps
        own[name] += time.process_time() - mine
        return images, time.perf_counter() - start, cpu_seconds() - cpu

    for name in contestants:
        run(name, args.warmup)
    own = dict.fromkeys(contestants, 0.0)
    names = list(contestants)
    rows: dict[str, list[tuple[int, float, float]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names[round_index % 2 :] + names[: round_index % 2]:
            rows[name].append(run(name, args.chunk))
    return {"rows": rows, "names": names, "images": len(files.train), "training_process_cpu": own}


# ---------------------------------------------------------------------------- report


def report(title: str, result: dict[str, Any], target: float) -> None:
    rows, (ours, theirs) = result["rows"], result["names"]
    print(f"  {'contestant':40s} {'images/s':>10s} {'CPU s':>8s} {'images/CPU s':>12s}")
    speed = {}
    for name in (ours, theirs):
        images = sum(n for n, _, _ in rows[name])
        seconds = sum(t for _, t, _ in rows[name])
        cpu = sum(c for _, _, c in rows[name])
        speed[name] = (images / seconds, images / max(cpu, 1e-9))
        print(f"  {name:40s} {images / seconds:10.1f} {cpu:8.1f} {images / max(cpu, 1e-9):12.1f}")
    median = statistics.median((n1 / t1) / (n2 / t2) for (n1, t1, _), (n2, t2, _) in zip(rows[ours], rows[theirs]))
    ratio, cpu_ratio = speed[ours][0] / speed[theirs][0], speed[ours][1] / speed[theirs][1]
    verdict = "ok" if ratio >= target else ("ok on CPU time" if cpu_ratio >= target else "BELOW")
    print(f"  {title}: {ratio:.3f} (median per round {median:.3f}; per CPU second {cpu_ratio:.3f}); "
          f"target >= {target}: {verdict}")  # fmt: skip


def child(args: argparse.Namespace, part: str, backend: str, images: int = 0) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", part, "--backend", backend, "--images", str(images or args.images),
               "--workers", str(args.workers), "--batch", str(args.batch), "--rounds", str(args.rounds),
               "--batches", str(args.batches), "--cache", str(args.cache), "--chunk", str(args.chunk),
               "--warmup", str(args.warmup), "--threads", str(args.threads or 0)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{part} / {backend} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("pipelines", "memory", "train", "all"), default="all")
    parser.add_argument("--backends", default="torch,keras")
    parser.add_argument("--images", type=int, default=3000, help="JPEGs in the throughput folder")
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=6, help="batches per round (pipelines)")
    parser.add_argument("--chunk", type=int, default=40, help="steps per round (train)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (train)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of the training process (train; torch.set_num_threads, TensorFlow's "
                             "intra_op_parallelism_threads; 0: the framework's choice)")  # fmt: skip
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "resnet-spec-bench-data")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child:
        functions = {"pipelines": lambda: pipelines(args, args.backend), "train": lambda: training(args, args.backend),
                     "memory": lambda: memory(args, args.backend, args.images)}  # fmt: skip
        print(json.dumps(functions[args.child]()))
        return 0
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; workers {args.workers}, "
          f"batch {args.batch}")  # fmt: skip
    for backend in args.backends.split(","):
        if args.part in ("pipelines", "all"):
            print(f"{backend}: {args.images} JPEGs of 256x256 read at 224x224 (random-resized crop, flip, normalize), "
                  f"{args.rounds} rounds of {args.batches} batches")  # fmt: skip
            report("ours / theirs", child(args, "pipelines", backend), 0.95)
        if args.part in ("memory", "all"):
            sizes = {n: child(args, "memory", backend, n) for n in (args.small, args.large)}
            small, large = sizes[args.small], sizes[args.large]
            for n, row in sizes.items():
                print(f"{backend}: one epoch of {n:,} JPEGs: {row['images']:,} images in {row['seconds']:.0f} s; peak "
                      f"RSS {row['self_mib']:.0f} MiB (before the framework is imported: {row['before_mib']:.0f}), largest child process "
                      f"{row['worker_mib']:.0f} MiB")  # fmt: skip
            ratio = large["self_mib"] / small["self_mib"]
            worker_ratio = large["worker_mib"] / max(small["worker_mib"], 1e-9)
            verdict = "ok" if max(ratio, worker_ratio) <= 1.1 else "ABOVE"
            print(f"  {args.large:,} / {args.small:,} images: peak RSS x{ratio:.3f} (process), x{worker_ratio:.3f} "
                  f"(largest child: the input workers of PyTorch); target <= 1.1: {verdict}")  # fmt: skip
        if args.part in ("train", "all"):
            result = child(args, "train", backend)
            print(f"{backend}: resnet_digits training, {result['images']} digits as 8x8 JPEGs vs the same images in "
                  f"memory, {args.rounds} rounds of {args.chunk} steps, {args.workers} workers"
                  + (f", {backend} intra-op threads {args.threads}" if args.threads else ""))  # fmt: skip
            result["names"] = ["JPEG folder", "tensors in memory"]
            report("folder / memory", result, 0.9)
            own = result["training_process_cpu"]
            if backend == "torch":  # its input workers are other processes: the training process' own CPU
                print(f"  CPU seconds of the training process alone: {own['JPEG folder']:.1f} (JPEG folder), "
                      f"{own['tensors in memory']:.1f} (memory): decoding is off its critical path when a core is free")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
