"""The PyTorch session (resnet_spec_torch.train) driven by the core's loop, against the contract
of resnet_spec.training.job: the schedule step by step, exact resume (mid-epoch and across
epochs), atomic checkpoints, evaluation, the DataLoader pipeline (memory-mapped data equal to
data in memory, bit for bit; any number of workers; a corrupt image named), PyTorch-form
optimizers, augmentation against the NumPy reference, and the execution switches (bfloat16,
channels_last, torch.compile) on a CPU. Tiny models on the bundled digits data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from optimizer_reference import numpy_optimizer

import resnet_spec
from resnet_spec.backends import BackendError, get_backend
from resnet_spec.training import augment as reference
from resnet_spec.training import data, loop, schedule
from resnet_spec.training.errors import DataError, TrainingError
from resnet_spec.training.job import Evaluation, Trainer, TrainingJob
from resnet_spec.training.run_dir import RunDir

pytestmark = pytest.mark.torch


BACKEND = get_backend("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny networks: one intra-op thread is faster, and far steadier on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# Small enough to train in seconds, with everything the trainer must get right: dropout (seeded
# masks, restored on resume), augmentation, SGD with Nesterov momentum and weight decay, a
# piecewise schedule by epoch with warm-up, label smoothing, kernel L2, a validation split.
TINY: dict[str, Any] = {
    "version": 1, "name": "tiny_digits", "input": {"height": 8, "width": 8, "channels": 1}, "classes": 10,
    "defaults": {"conv_bias": False, "kernel_l2": 1e-4, "norm": {"running_stats_decay": 0.9, "epsilon": 1e-5}},
    "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 8}],
    "head": {"layers": [{"type": "global_avg_pool"}, {"type": "dropout", "rate": 0.2}]},
    "training": {
        "batch_size": 128, "epochs": 3,
        "optimizer": {"kind": "sgd", "learning_rate": 0.2, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"kind": "piecewise", "unit": "epoch", "boundaries": [2], "multipliers": [1.0, 0.1]},
        "warmup": {"iterations": 4, "start_multiplier": 0.1},
        "loss": {"label_smoothing": 0.1}, "validation_split": 0.1,
        "augmentation": {"random_crop_padding": 1, "horizontal_flip": True},
        "preprocessing": {"mode": "per_channel_mean", "scale": 0.0625}, "seed": 3, "tensorboard": False,
    },
}  # fmt: skip
STEPS_PER_EPOCH = 11  # 1,437 digits for training, 10% held out: 1,293 / 128
EPOCHS = 3


def make_job(out: Path, spec: dict[str, Any] = TINY, source: str = "digits", **kwargs: Any) -> TrainingJob:
    arch = resnet_spec.build_architecture(spec)
    return TrainingJob.prepare(arch, data.load(source, arch.spec), RunDir(out, tensorboard=False), spec_data=spec,
                               execution=kwargs.pop("execution", {}), progress=False, **kwargs)  # fmt: skip


def train(job: TrainingJob) -> Evaluation:
    return loop.train(BACKEND, job)


def final_state(run: Path) -> dict[str, Any]:
    """Everything the run's checkpoint holds (model, optimizer, random states)."""
    return torch.load(run / "checkpoint" / "training.pt", map_location="cpu", weights_only=True)


def assert_same(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted run, recording (step, learning rate, loss) at every step."""
    out = tmp_path_factory.mktemp("full")
    steps: list[tuple[int, float, float]] = []
    job = make_job(out, on_step=lambda step, rate, loss: steps.append((step, rate, loss)))
    evaluation = train(job)
    return {"out": out, "job": job, "evaluation": evaluation, "steps": steps}


# ---------------------------------------------------------------------------- the contract


def test_backend_is_a_trainer() -> None:
    assert isinstance(BACKEND, Trainer)


def test_loss_falls_and_learning_rate_follows_the_schedule(full_run: dict[str, Any]) -> None:
    job, steps = full_run["job"], full_run["steps"]
    training = job.arch.spec.training
    assert [step for step, _, _ in steps] == list(range(EPOCHS * STEPS_PER_EPOCH))
    for step, rate, _ in steps:
        assert rate == schedule.learning_rate(training, step, STEPS_PER_EPOCH)
    # warm-up starts at 0.1 x 0.2; from epoch 3 (step 22) the schedule's 0.1 x 0.2
    assert steps[0][1] == pytest.approx(0.02) and steps[4][1] == pytest.approx(0.2) and steps[22][1] == pytest.approx(0.02)
    losses = [loss for _, _, loss in steps]
    assert np.isfinite(losses).all() and np.mean(losses[-11:]) < np.mean(losses[:11]) - 0.2
    rows = job.run_dir.history()
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [11, 22, 33]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert rows[-1]["learning_rate"] == pytest.approx(0.02)
    assert full_run["evaluation"].accuracy > 0.2  # chance is 0.1; flips and crops of 8x8 digits slow learning


def test_evaluation_and_evaluate_from_the_checkpoint(full_run: dict[str, Any]) -> None:
    job, evaluation = full_run["job"], full_run["evaluation"]
    test_size = len(job.test)
    assert evaluation.confusion.shape == (10, 10) and evaluation.confusion.sum() == test_size
    assert np.trace(evaluation.confusion) == round(evaluation.accuracy * test_size)
    again = loop.evaluate(BACKEND, job.arch, full_run["out"] / "checkpoint", job.test)
    np.testing.assert_array_equal(again.confusion, evaluation.confusion)
    assert again.loss == pytest.approx(evaluation.loss, rel=1e-6)


def test_checkpoint_is_complete_atomic_and_weights_only(full_run: dict[str, Any]) -> None:
    out = full_run["out"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporaries left
    folder = out / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "training.pt"]
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 33 and state["epoch"] == 3 and state["preprocessor"]["mode"] == "per_channel_mean"
    assert state["backend"] == "torch" and state["steps_per_epoch"] == 11 and len(state["epoch_sums"]) == 3
    payload = final_state(out)  # weights_only=True: plain tensors and Python values
    assert set(payload) == {"model", "optimizer", "scaler", "rng"}
    assert "stem.conv1.weight" in payload["model"] and payload["optimizer"]["state"]


def test_resume_is_exact_mid_epoch_and_across_epochs(full_run: dict[str, Any], tmp_path: Path) -> None:
    """Uninterrupted == stop at step 7 (mid-epoch 1) + resume to step 15 (mid-epoch 2) + resume
    to the end: bit for bit the same weights, optimizer state, random state and epoch metrics."""
    out = tmp_path / "run"
    train(make_job(out, max_steps=7))
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 7
    assert not out.joinpath("metrics.jsonl").exists()  # no epoch finished yet
    train(make_job(out, resume=True, max_steps=15))
    assert [r["epoch"] for r in RunDir(out).history()] == [1]
    evaluation = train(make_job(out, resume=True))
    assert_same(final_state(out), final_state(full_run["out"]))
    for a, b in zip(RunDir(out).history(), full_run["job"].run_dir.history(), strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    np.testing.assert_array_equal(evaluation.confusion, full_run["evaluation"].confusion)


def test_resume_after_a_whole_epoch(full_run: dict[str, Any], tmp_path: Path) -> None:
    """Stopped at the end of epoch 2 (the epoch-end checkpoint) + resume == uninterrupted."""
    train(make_job(tmp_path, max_steps=2 * STEPS_PER_EPOCH))
    assert [r["epoch"] for r in RunDir(tmp_path).history()] == [1, 2]
    train(make_job(tmp_path, resume=True))
    assert_same(final_state(tmp_path), final_state(full_run["out"]))


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(make_job(tmp_path, resume=True))


class _Crash(Exception):
    pass


def test_checkpoint_every_steps_resumes_exactly(full_run: dict[str, Any], tmp_path: Path) -> None:
    """checkpoint_every 4 checkpoints at steps 4 and 8 of the first epoch: a run that dies after
    step 10 resumes from step 8's checkpoint to the uninterrupted result."""

    def crash(step: int, rate: float, loss: float) -> None:
        if step == 9:
            raise _Crash

    with pytest.raises(_Crash):
        train(make_job(tmp_path, checkpoint_every=4, on_step=crash))
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 8
    steps: list[int] = []
    train(make_job(tmp_path, resume=True, checkpoint_every=4, on_step=lambda s, r, l: steps.append(s)))
    assert steps[0] == 8 and steps[-1] == 32
    assert_same(final_state(tmp_path), final_state(full_run["out"]))


# ---------------------------------------------------------------------------- the DataLoader pipeline


def test_memory_mapped_data_through_dataloader_workers_equals_data_in_memory(tmp_path: Path) -> None:
    """The digits as an uncompressed .npz (memory-mapped) stream through two DataLoader worker
    processes; the run equals the in-memory one bit for bit: the same examples, the same
    preprocessing arithmetic, the same layout on the device."""
    digits = data.load("digits", resnet_spec.build_architecture(TINY).spec)
    every = np.arange(len(digits.train))
    np.savez(tmp_path / "digits.npz", x_train=digits.train.read(every), y_train=digits.train.labels,
             x_test=digits.test.read(np.arange(len(digits.test))), y_test=digits.test.labels)  # fmt: skip
    memory, streamed = [], []
    train(make_job(tmp_path / "a", max_steps=6, on_step=lambda s, r, l: memory.append(l)))
    job = make_job(tmp_path / "b", source=str(tmp_path / "digits.npz"), max_steps=6, execution={"workers": 2},
                   on_step=lambda s, r, l: streamed.append(l))  # fmt: skip
    assert not job.train.in_memory
    train(job)
    assert memory == streamed
    assert_same(final_state(tmp_path / "b"), final_state(tmp_path / "a"))


def test_image_folder_results_do_not_depend_on_the_workers(tmp_path: Path) -> None:
    from image_folders import FOLDER_SPEC, write_folder

    folder = write_folder(tmp_path / "images", per_class=8)
    losses = []
    for workers in (0, 2):
        seen: list[float] = []
        train(make_job(tmp_path / f"w{workers}", FOLDER_SPEC, str(folder), max_steps=4, execution={"workers": workers},
                       on_step=lambda s, r, l, seen=seen: seen.append(l)))  # fmt: skip
        losses.append(seen)
    assert losses[0] == losses[1] and len(losses[0]) == 4
    assert_same(final_state(tmp_path / "w0"), final_state(tmp_path / "w2"))


def test_a_corrupt_image_stops_training_naming_the_file(tmp_path: Path) -> None:
    from image_folders import FOLDER_SPEC, write_folder

    folder = write_folder(tmp_path / "images", per_class=8)
    broken = sorted((folder / "train" / "class1").iterdir())[2]
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(DataError, match=rf"{broken.name}: cannot decode image"):
        train(make_job(tmp_path / "run", FOLDER_SPEC, str(folder), execution={"workers": 1}))


def test_a_softmax_output_trains_on_its_logits(tmp_path: Path) -> None:
    """`output: softmax` trains through the classifier's logits: the same losses as the logits
    spec, step for step (no dropout, so no random masks differ)."""
    base = {**TINY, "head": {"layers": [{"type": "global_avg_pool"}]}}
    losses = []
    for name, spec in (("logits", base), ("softmax", {**base, "head": {**base["head"], "output": "softmax"}})):
        seen: list[float] = []
        train(make_job(tmp_path / name, spec, max_steps=3, on_step=lambda s, r, loss, seen=seen: seen.append(loss)))
        losses.append(seen)
    assert losses[0] == losses[1]


# ---------------------------------------------------------------------------- pieces against NumPy


@pytest.mark.parametrize("channels_last", [False, True])
def test_device_augmentation_equals_the_numpy_reference(channels_last: bool) -> None:
    from resnet_spec_torch import augment

    from resnet_spec.spec import Augmentation

    images = np.random.default_rng(0).standard_normal((16, 8, 6, 3)).astype(np.float32)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
    for settings in (Augmentation(random_crop_padding=2, horizontal_flip=True), Augmentation(random_crop_padding=3),
                     Augmentation(horizontal_flip=True)):  # fmt: skip
        expected = reference.augment(images, settings, reference.generator(5, 1, 2))
        tops, lefts, flips = reference.draw(settings, len(images), reference.generator(5, 1, 2))
        got = augment.apply(nchw, torch.from_numpy(tops), torch.from_numpy(lefts), torch.from_numpy(flips),
                            padding=settings.random_crop_padding, flip=settings.horizontal_flip)  # fmt: skip
        assert got.stride() == nchw.stride()  # the input's memory layout: the network's speed depends on it
        np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), expected)


def test_augmentation_keeps_the_layout_of_single_channel_batches() -> None:
    """Preprocessed NHWC images with one channel become an NCHW view with channels-last strides;
    the augmented batch keeps them (an NCHW copy made the digits network ~10% slower)."""
    from resnet_spec_torch import augment

    x = torch.from_numpy(np.ones((4, 8, 8, 1), np.float32)).permute(0, 3, 1, 2).contiguous()
    zeros = torch.zeros(4, dtype=torch.int64)
    got = augment.apply(x, zeros, zeros + 2, torch.tensor([True, False, True, False]), padding=1, flip=True)
    assert got.stride() == x.stride() == (64, 1, 8, 1)
    assert float(got[:, :, 0].abs().sum()) == 0.0  # top 0 with padding 1: the first row is padding


@pytest.mark.parametrize(("kind", "nesterov"), [("sgd", False), ("sgd", True), ("adam", False), ("adamw", False)])
@pytest.mark.parametrize("applies_to", ["kernels", "all"])
def test_optimizers_follow_the_contract_across_learning_rate_changes(kind: str, nesterov: bool, applies_to: str) -> None:
    from resnet_spec_torch.optim import make_optimizer, set_learning_rate

    from resnet_spec.spec import Optimizer

    spec = {"version": 1, "input": {"height": 2, "width": 2, "channels": 1}, "classes": 3,
            "defaults": {"conv_bias": True}, "stem": [{"type": "conv", "filters": 2, "kernel_size": 1}],
            "stages": [{"block": "basic", "blocks": 1, "filters": 2}]}  # fmt: skip
    arch = resnet_spec.build_architecture(spec)
    model = BACKEND.build(arch, seed=0)
    conv = model.stem.conv1
    start = {"kernel": conv.weight.detach().numpy().copy(), "bias": conv.bias.detach().numpy().copy()}
    settings = Optimizer(kind=kind, learning_rate=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.1,
                         weight_decay_applies_to=applies_to)  # fmt: skip
    optimizer = make_optimizer(settings, model, arch)
    rng = np.random.default_rng(0)
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in start.items()} for _ in range(4)]
    rates = [0.1, 0.1, 0.01, 0.05]  # the learning rate changes: where Keras' own SGD form would differ
    for step_grads, rate in zip(grads, rates):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        conv.weight.grad = torch.from_numpy(step_grads["kernel"])
        conv.bias.grad = torch.from_numpy(step_grads["bias"])
        set_learning_rate(optimizer, rate)
        optimizer.step()
    for key, tensor in (("kernel", conv.weight), ("bias", conv.bias)):
        decay = applies_to == "all" or key == "kernel"
        expected = numpy_optimizer(kind, start[key], [g[key] for g in grads], rates, decay, nesterov=nesterov)
        np.testing.assert_allclose(tensor.detach().numpy(), expected, rtol=2e-6, atol=2e-6, err_msg=key)


# ---------------------------------------------------------------------------- execution switches


def _short(tmp_path: Path, steps: int = 3, **kwargs: Any) -> Any:
    return train(make_job(tmp_path, max_steps=steps, **kwargs))


def test_bfloat16_autocast_runs_on_the_cpu(tmp_path: Path) -> None:
    losses: list[float] = []
    evaluation = _short(tmp_path, execution={"mixed_precision": "bfloat16"}, on_step=lambda s, r, l: losses.append(l))
    assert np.isfinite(evaluation.loss) and np.isfinite(losses).all()
    assert final_state(tmp_path)["model"]["stem.conv1.weight"].dtype == torch.float32  # parameters stay float32


def test_channels_last_runs_and_matches_nchw(tmp_path: Path) -> None:
    a = _short(tmp_path / "nchw", steps=1)  # one step: later steps amplify rounding differences
    b = _short(tmp_path / "nhwc", steps=1, execution={"channels_last": True})
    assert np.isfinite(b.loss)
    weights = final_state(tmp_path / "nhwc")["model"]
    assert weights["stem.conv1.weight"].is_contiguous()  # checkpoints are layout-free
    for key, value in final_state(tmp_path / "nchw")["model"].items():
        torch.testing.assert_close(weights[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert a.confusion.sum() == b.confusion.sum()


def test_torch_compile_runs_or_says_why_not(tmp_path: Path) -> None:
    from resnet_spec_torch.distributed import inductor_works

    works, reason = inductor_works(torch.device("cpu"))
    if not works:
        with pytest.warns(RuntimeWarning, match="torch.compile is not available"):
            evaluation = _short(tmp_path, steps=2, execution={"compile": True})
        assert np.isfinite(evaluation.loss)
        pytest.skip(f"inductor cannot compile here, the trainer fell back to eager mode: {reason}")
    spec = {**TINY, "head": {"layers": [{"type": "global_avg_pool"}]}}  # no dropout: eager == compiled
    eager: list[float] = []
    compiled: list[float] = []
    _short(tmp_path / "eager", steps=2, spec=spec, on_step=lambda s, r, l: eager.append(l))
    _short(tmp_path / "compiled", steps=2, spec=spec, execution={"compile": True}, on_step=lambda s, r, l: compiled.append(l))
    np.testing.assert_allclose(compiled, eager, rtol=1e-4)


def test_gpu_requested_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is visible")
    with pytest.raises(BackendError, match="no GPU"):
        _short(tmp_path, execution={"device": "gpu"})
