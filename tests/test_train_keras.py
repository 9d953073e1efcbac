"""The Keras session (resnet_spec_keras.train) driven by the core's loop, against the contract
of resnet_spec.training.job: schedule step by step, PyTorch-form optimizers against NumPy,
augmentation against the NumPy reference, exact resume (mid-epoch and across epochs), atomic
checkpoints, evaluation, the tf.data pipeline (memory-mapped data equal to data in memory, bit
for bit; a corrupt image named), and the execution switches (bfloat16, XLA, MirroredStrategy on
a CPU, with the pipeline's per-replica shards). Tiny models on the bundled digits data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from optimizer_reference import numpy_optimizer

import resnet_spec
from resnet_spec.backends import BackendError, get_backend
from resnet_spec.training import augment as reference
from resnet_spec.training import data, loop, schedule
from resnet_spec.training.errors import DataError, TrainingError
from resnet_spec.training.job import Evaluation, Trainer, TrainingJob
from resnet_spec.training.run_dir import RunDir

pytestmark = pytest.mark.keras
BACKEND = get_backend("keras")

# A ResNet small enough to train in a second, with everything the trainer must get right:
# dropout (seeded masks), augmentation, SGD with Nesterov momentum and weight decay, a
# piecewise schedule by epoch with warm-up, label smoothing, kernel L2, a validation split.
TINY: dict[str, Any] = {
    "version": 1, "name": "tiny_digits", "input": {"height": 8, "width": 8, "channels": 1}, "classes": 10,
    "defaults": {"conv_bias": False, "kernel_l2": 1e-4, "norm": {"running_stats_decay": 0.9, "epsilon": 1e-5}},
    "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 8}],
    "head": {"layers": [{"type": "global_avg_pool"}, {"type": "dropout", "rate": 0.2}]},
    "training": {
        "batch_size": 128, "epochs": 6,
        "optimizer": {"kind": "sgd", "learning_rate": 0.2, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"kind": "piecewise", "unit": "epoch", "boundaries": [5], "multipliers": [1.0, 0.1]},
        "warmup": {"iterations": 4, "start_multiplier": 0.1},
        "loss": {"label_smoothing": 0.1}, "validation_split": 0.1,
        "augmentation": {"random_crop_padding": 1, "horizontal_flip": True},
        "preprocessing": {"mode": "per_channel_mean", "scale": 0.0625}, "seed": 3, "tensorboard": False,
    },
}  # fmt: skip
STEPS_PER_EPOCH = 11  # 1,437 digits for training, 10% held out: 1,293 / 128


def make_job(out: Path, spec: dict[str, Any] = TINY, source: str = "digits", **kwargs: Any) -> TrainingJob:
    arch = resnet_spec.build_architecture(spec)
    return TrainingJob.prepare(arch, data.load(source, arch.spec), RunDir(out, tensorboard=False), spec_data=spec,
                               execution=kwargs.pop("execution", {}), progress=False, **kwargs)  # fmt: skip


def train(job: TrainingJob) -> Evaluation:
    return loop.train(BACKEND, job)


def final_state(run: Path, spec: dict[str, Any] = TINY) -> dict[str, np.ndarray]:
    """Every weight and optimizer variable the run's checkpoint holds."""
    arch = resnet_spec.build_architecture(spec)
    model = BACKEND.build(arch)
    model.load_weights(run / "checkpoint" / "model.weights.h5")
    state = {f"{n}.{k}": v for n, entry in BACKEND.get_weights(model, arch).items() for k, v in entry.items()}
    with np.load(run / "checkpoint" / "optimizer.npz") as saved:
        state.update({f"opt.{name}": saved[f"v{i}"] for i, name in enumerate(saved["names"])})
    with np.load(run / "checkpoint" / "random.npz") as saved:
        state.update({f"rng.{name}": saved[f"s{i}"] for i, name in enumerate(saved["names"])})
    return state


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted 6-epoch run, recording the learning rate fed at every step."""
    out = tmp_path_factory.mktemp("full")
    rates: list[tuple[int, float, float]] = []
    job = make_job(out, on_step=lambda step, rate, loss: rates.append((step, rate, loss)))
    evaluation = train(job)
    return {"out": out, "job": job, "evaluation": evaluation, "rates": rates}


# ---------------------------------------------------------------------------- the contract


def test_backend_is_a_trainer() -> None:
    assert isinstance(BACKEND, Trainer)


def test_loss_falls_and_learning_rate_follows_the_schedule(full_run: dict[str, Any]) -> None:
    job, rates = full_run["job"], full_run["rates"]
    training = job.arch.spec.training
    assert [step for step, _, _ in rates] == list(range(6 * STEPS_PER_EPOCH))
    for step, rate, _ in rates:
        assert rate == schedule.learning_rate(training, step, STEPS_PER_EPOCH)
    # warm-up starts at 0.1 x 0.2; after epoch 5 the schedule's 0.1 x 0.2
    assert rates[0][1] == pytest.approx(0.02) and rates[55][1] == pytest.approx(0.02)
    losses = [loss for _, _, loss in rates]
    assert np.isfinite(losses).all() and np.mean(losses[-11:]) < np.mean(losses[:11])
    rows = job.run_dir.history()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6] and [r["step"] for r in rows] == [11, 22, 33, 44, 55, 66]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert full_run["evaluation"].accuracy > 0.3  # chance is 0.1; flips and crops of 8x8 digits slow learning


def test_evaluation_and_evaluate_from_the_checkpoint(full_run: dict[str, Any]) -> None:
    job, evaluation = full_run["job"], full_run["evaluation"]
    test_size = len(job.test)
    assert evaluation.confusion.shape == (10, 10) and evaluation.confusion.sum() == test_size
    assert np.trace(evaluation.confusion) == round(evaluation.accuracy * test_size)
    again = loop.evaluate(BACKEND, job.arch, full_run["out"] / "checkpoint", job.test)
    np.testing.assert_array_equal(again.confusion, evaluation.confusion)
    assert again.loss == pytest.approx(evaluation.loss, rel=1e-6)


def test_checkpoint_is_complete_and_no_temporaries_are_left(full_run: dict[str, Any]) -> None:
    out = full_run["out"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    folder = out / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["model.weights.h5", "optimizer.npz", "random.npz", "state.json"]
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 66 and state["epoch"] == 6 and state["preprocessor"]["mode"] == "per_channel_mean"


def test_resume_is_exact_mid_epoch_and_across_epochs(full_run: dict[str, Any], tmp_path: Path) -> None:
    """6 epochs uninterrupted == stop at step 7 (mid-epoch 1) + resume to step 15 (mid-epoch 2)
    + resume to the end: the same weights, optimizer slots, dropout seeds and epoch metrics."""
    out = tmp_path / "run"
    train(make_job(out, max_steps=7))
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 7
    assert out.joinpath("metrics.jsonl").exists() is False  # no epoch finished yet
    train(make_job(out, resume=True, max_steps=15))
    evaluation = train(make_job(out, resume=True))
    expected, got = final_state(full_run["out"]), final_state(out)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    for a, b in zip(RunDir(out).history(), full_run["job"].run_dir.history()):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    np.testing.assert_array_equal(evaluation.confusion, full_run["evaluation"].confusion)


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(make_job(tmp_path, resume=True))


# ---------------------------------------------------------------------------- the tf.data pipeline


def test_memory_mapped_data_through_tf_data_equals_data_in_memory(tmp_path: Path) -> None:
    """The digits as an uncompressed .npz (memory-mapped) stream through tf.data (two parallel
    reads); the run equals the in-memory one bit for bit."""
    digits = data.load("digits", resnet_spec.build_architecture(TINY).spec)
    np.savez(tmp_path / "digits.npz", x_train=digits.train.read(np.arange(len(digits.train))), y_train=digits.train.labels,
             x_test=digits.test.read(np.arange(len(digits.test))), y_test=digits.test.labels)  # fmt: skip
    memory: list[float] = []
    streamed: list[float] = []
    a = train(make_job(tmp_path / "a", max_steps=6, on_step=lambda s, r, l: memory.append(l)))
    job = make_job(tmp_path / "b", source=str(tmp_path / "digits.npz"), max_steps=6, execution={"workers": 2},
                   on_step=lambda s, r, l: streamed.append(l))  # fmt: skip
    assert not job.train.in_memory
    b = train(job)
    assert memory == streamed
    expected, got = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    np.testing.assert_array_equal(a.confusion, b.confusion)


def test_a_corrupt_image_stops_training_naming_the_file(tmp_path: Path) -> None:
    from image_folders import FOLDER_SPEC, write_folder

    folder = write_folder(tmp_path / "images", per_class=8)
    broken = sorted((folder / "train" / "class1").iterdir())[2]
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(DataError, match=rf"{broken.name}: cannot decode image"):
        train(make_job(tmp_path / "run", FOLDER_SPEC, str(folder), execution={"workers": 1}))


# ---------------------------------------------------------------------------- pieces against NumPy


def test_device_augmentation_equals_the_numpy_reference() -> None:
    from resnet_spec_keras import augment

    from resnet_spec.spec import Augmentation

    images = np.random.default_rng(0).standard_normal((16, 8, 6, 3)).astype(np.float32)
    for settings in (Augmentation(random_crop_padding=2, horizontal_flip=True), Augmentation(random_crop_padding=3),
                     Augmentation(horizontal_flip=True)):  # fmt: skip
        expected = reference.augment(images, settings, reference.generator(5, 1, 2))
        numbers = np.stack(reference.draw(settings, len(images), reference.generator(5, 1, 2)), axis=1).astype(np.int32)
        got = augment.apply(tf.constant(images), numbers, padding=settings.random_crop_padding,
                            flip=settings.horizontal_flip)  # fmt: skip
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize(("kind", "nesterov"), [("sgd", False), ("sgd", True), ("adam", False), ("adamw", False)])
@pytest.mark.parametrize("applies_to", ["kernels", "all"])
def test_optimizers_are_pytorch_forms_across_learning_rate_changes(kind: str, nesterov: bool, applies_to: str) -> None:
    from resnet_spec_keras.optim import TorchFormOptimizer

    rng = np.random.default_rng(0)
    start = {
        "kernel": rng.standard_normal((3, 4)).astype(np.float32),
        "bias": rng.standard_normal(4).astype(np.float32),
    }
    variables = {name: keras.Variable(value, name=name) for name, value in start.items()}
    grads = [{name: rng.standard_normal(v.shape).astype(np.float32) for name, v in start.items()} for _ in range(4)]
    rates = [0.1, 0.1, 0.01, 0.05]  # the learning rate changes: where Keras' own SGD form differs
    optimizer = TorchFormOptimizer(kind, 0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.1, decay=applies_to)
    order = list(variables.values())
    optimizer.build(order)
    for step_grads, rate in zip(grads, rates):
        optimizer.learning_rate = rate
        optimizer.apply([tf.constant(step_grads[v.name]) for v in order], order)
    for name, variable in variables.items():
        decay = applies_to == "all" or name == "kernel"
        expected = numpy_optimizer(kind, start[name], [g[name] for g in grads], rates, decay, nesterov=nesterov)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-6, atol=2e-6, err_msg=name)


def test_label_smoothing_is_pytorchs_definition() -> None:
    from resnet_spec_keras.train import cross_entropy

    logits = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    labels = np.array([0, 3, 1, 1, 2])
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = np.full((5, 4), 0.2 / 4) + 0.8 * np.eye(4)[labels]
    np.testing.assert_allclose(cross_entropy(tf.constant(logits), tf.constant(labels), 0.2).numpy(),
                               -(targets * log_p).sum(axis=1), rtol=1e-5)  # fmt: skip


# ---------------------------------------------------------------------------- execution switches


def _short(tmp_path: Path, steps: int = 3, **kwargs: Any) -> Any:
    return train(make_job(tmp_path, max_steps=steps, **kwargs))


def test_mirrored_strategy_on_the_cpu_matches_one_device(tmp_path: Path) -> None:
    plain = _short(tmp_path / "plain")
    mirrored = _short(tmp_path / "mirrored", extra={"strategy": "mirrored"})
    a, b = final_state(tmp_path / "plain"), final_state(tmp_path / "mirrored")
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert mirrored.confusion.sum() == plain.confusion.sum()


TWO_REPLICAS = """
import sys, tempfile
from pathlib import Path
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
import test_train_keras as t
from resnet_spec.training import data
losses = []
job = t.make_job(Path(tempfile.mkdtemp()), max_steps=22, extra={"strategy": "mirrored"},
                 on_step=lambda step, rate, loss: losses.append(loss))
evaluation = t.train(job)
assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
assert evaluation.confusion.sum() == len(job.test)
# The same digits from a memory map: tf.data feeds each replica its shard of every global batch
digits = data.load("digits", job.arch.spec)
np.savez(sys.argv[2], x_train=digits.train.read(np.arange(len(digits.train))), y_train=digits.train.labels,
         x_test=digits.test.read(np.arange(len(digits.test))), y_test=digits.test.labels)
streamed = []
job = t.make_job(Path(tempfile.mkdtemp()), source=sys.argv[2], max_steps=12, extra={"strategy": "mirrored"},
                 execution={"workers": 2}, on_step=lambda step, rate, loss: streamed.append(loss))
assert not job.train.in_memory
t.train(job)
np.testing.assert_allclose(streamed, losses[:12], rtol=1e-6)
print("replicas ok")
"""


def test_mirrored_strategy_with_two_replicas_on_two_logical_cpus(tmp_path: Path) -> None:
    """Every global batch is split between two replicas (unevenly for the last batch of an
    epoch, 1,293 = 10 x 128 + 13); the summed gradients train the model; data streamed through
    tf.data (one shard per replica) trains the same steps as data in memory."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-c", TWO_REPLICAS, str(Path(__file__).parent), str(tmp_path / "digits.npz")]
    run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0 and "replicas ok" in run.stdout, run.stderr[-3000:]


def test_bfloat16_mixed_precision_runs_on_the_cpu(tmp_path: Path) -> None:
    evaluation = _short(tmp_path, execution={"mixed_precision": "bfloat16"})
    assert np.isfinite(evaluation.loss)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_xla_compile_runs_or_says_why_not(tmp_path: Path) -> None:
    try:
        evaluation = _short(tmp_path, steps=2, execution={"compile": True})
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as exc:  # pragma: no cover
        pytest.skip(f"XLA cannot compile the training step here: {exc}")
    assert np.isfinite(evaluation.loss)


def test_gpu_requested_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if tf.config.list_physical_devices("GPU"):  # pragma: no cover
        pytest.skip("a GPU is visible")
    with pytest.raises(BackendError, match="no GPU"):
        _short(tmp_path, execution={"device": "gpu"})
