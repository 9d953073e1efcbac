"""Training through the real command: a run killed with SIGKILL mid-epoch and resumed, or stopped
with Ctrl-C (which saves a checkpoint) and resumed, ends with exactly the weights of an
uninterrupted run, in both backends, reading an image folder through their input pipelines;
both backends train the same batches (the same losses, step for step) from digits and from an
image folder; data problems are reported before training starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from image_folders import FOLDER_SPEC, write_folder

import resnet_spec
from resnet_spec.training.commands import train

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
# Small and short: two stages of one block.
SMALL = ["training.epochs=3", "training.batch_size=128", "stages.0.blocks=1", "stages.1.blocks=1"]
# The image-folder runs: 16 images a class (38 for training after the hold-out): 5 steps an epoch,
# 4 epochs, a checkpoint every 3 steps (mid-epoch) as well as at every epoch's end.
PER_CLASS, STEPS_PER_EPOCH, EPOCHS = 16, 5, 4
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "backends"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def _command(spec: Path, data: str | Path, out: Path, backend: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "resnet_spec.cli", "train", str(spec), "--backend", backend, "--data", str(data),
            "--out", str(out), "--no-progress", "--workers", "2", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folder")
    spec = {**FOLDER_SPEC, "training": {**FOLDER_SPEC["training"], "epochs": EPOCHS, "checkpoint_every": 3}}
    (root / "spec.json").write_text(json.dumps(spec))
    return {"spec": root / "spec.json", "data": write_folder(root / "images", per_class=PER_CLASS)}


def _weights(run: Path, backend: str) -> dict[str, np.ndarray]:
    """Every tensor of the final checkpoint: model, optimizer and random states."""
    folder = run / "checkpoint"
    if backend == "torch":
        import torch

        def flat(value: Any, prefix: str) -> dict[str, np.ndarray]:
            if isinstance(value, torch.Tensor):
                return {prefix: value.numpy()}
            if isinstance(value, dict):
                return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()}
            if isinstance(value, list):
                return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}[{i}]").items()}
            return {prefix: np.asarray(value if value is not None else 0)}

        return flat(torch.load(folder / "training.pt", weights_only=True), "")
    import h5py

    values: dict[str, np.ndarray] = {}
    with h5py.File(folder / "model.weights.h5", "r") as file:
        file.visititems(lambda name, item: values.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    for name in ("optimizer.npz", "random.npz"):
        with np.load(folder / name) as saved:
            values.update({f"{name}.{key}": saved[key] for key in saved.files})
    return values


def _assert_same_run(a: Path, b: Path, backend: str) -> None:
    ours, theirs = _weights(a, backend), _weights(b, backend)
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    rows = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (a, b)]  # fmt: skip
    assert rows[0] == rows[1] and [r["epoch"] for r in rows[0]] == list(range(1, EPOCHS + 1))


def _wait_for(proc: subprocess.Popen[bytes], state: Path, mid_epoch: bool) -> int:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            step = json.loads(state.read_text())["step"]
        except (OSError, ValueError, KeyError):  # not there yet, or between the two renames of a save
            step = 0
        if step and (step % STEPS_PER_EPOCH or not mid_epoch):
            return int(step)
        time.sleep(0.01)
    raise AssertionError("the run finished (or never checkpointed) before it could be interrupted; make it longer")


@pytest.fixture(scope="module")
def uninterrupted(folder: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    runs = {}
    for backend in ("torch", "keras"):
        pytest.importorskip("torch" if backend == "torch" else "tensorflow")
        out = tmp_path_factory.mktemp("whole") / backend
        subprocess.run(_command(folder["spec"], folder["data"], out, backend), check=True, capture_output=True,
                       timeout=600, cwd=REPO, env=ENV)  # fmt: skip
        runs[backend] = out
    return runs


@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_sigkill_mid_epoch_then_resume_is_bit_for_bit(folder: dict[str, Path], uninterrupted: dict[str, Path],
                                                      backend: str, tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "run"
    proc = subprocess.Popen(_command(folder["spec"], folder["data"], out, backend), cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    step = _wait_for(proc, out / "checkpoint" / "state.json", mid_epoch=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(_command(folder["spec"], folder["data"], out, backend, "--resume"), capture_output=True,
                          text=True, timeout=600, cwd=REPO, env=ENV, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    resumed_at = int(done.stderr.split("resumed at step ")[1].split()[0])
    assert resumed_at >= step and resumed_at % STEPS_PER_EPOCH  # killed mid-epoch, resumed there
    _assert_same_run(out, uninterrupted[backend], backend)


@pytest.mark.torch
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(folder: dict[str, Path], uninterrupted: dict[str, Path],
                                                          tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "run"
    proc = subprocess.Popen(_command(folder["spec"], folder["data"], out, "torch"), cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for(proc, out / "checkpoint" / "state.json", mid_epoch=False)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "stopping after this step" in stderr
    hint = stderr.strip().splitlines()[-1]
    saved = json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    assert f"interrupted after step {saved} " in hint and hint.endswith("--resume") and f"--out {out}" in hint
    assert saved < STEPS_PER_EPOCH * EPOCHS
    done = subprocess.run(_command(folder["spec"], folder["data"], out, "torch", "--resume"), capture_output=True,
                          text=True, timeout=600, cwd=REPO, env=ENV, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_run(out, uninterrupted["torch"], "torch")


@pytest.mark.keras
@pytest.mark.torch
def test_backends_agree_step_for_step(tmp_path: Path) -> None:
    """Same seeded weights, same batches, same schedule, same loss: the learning rate at every
    step is identical and the losses of the first steps agree to float32 precision."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    overrides = SMALL + [
        "training.optimizer={kind: sgd, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0005}",
        "training.schedule={kind: piecewise, boundaries: [3, 6], multipliers: [1, 0.1, 0.01]}",
    ]
    result = resnet_spec.validate(DIGITS, overrides=overrides)
    assert result.architecture is not None and result.document is not None
    records: dict[str, list[tuple[int, float, float]]] = {}
    for backend in ("keras", "torch"):
        seen: list[tuple[int, float, float]] = []
        train(result.architecture, result.document.data, backend=backend, source="digits", out=tmp_path / backend,
              max_steps=8, progress=False, on_step=lambda s, lr, loss, seen=seen: seen.append((s, lr, loss)))  # fmt: skip
        records[backend] = seen
    keras_steps, torch_steps = records["keras"], records["torch"]
    assert [(s, lr) for s, lr, _ in keras_steps] == [(s, lr) for s, lr, _ in torch_steps]
    assert [lr for _, lr, _ in torch_steps] == pytest.approx([0.05] * 3 + [0.005] * 3 + [0.0005] * 2)
    np.testing.assert_allclose([loss for *_, loss in keras_steps], [loss for *_, loss in torch_steps], rtol=1e-4)


@pytest.mark.keras
@pytest.mark.torch
def test_backends_train_the_same_batches_from_an_image_folder(folder: dict[str, Path], tmp_path: Path) -> None:
    """The first epoch of the miniature ImageNet recipe (random-resized crops, flips, ImageNet
    normalization; JPEG and PNG files decoded by each framework's pipeline, two workers): the
    same losses at every step, to 1e-5."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    spec = json.loads(folder["spec"].read_text())
    arch = resnet_spec.build_architecture(spec)
    losses = {}
    for backend in ("keras", "torch"):
        seen: list[float] = []
        train(arch, spec, backend=backend, source=str(folder["data"]), out=tmp_path / backend, max_steps=STEPS_PER_EPOCH,
              progress=False, execution={"workers": 2}, on_step=lambda s, lr, loss, seen=seen: seen.append(loss))  # fmt: skip
        losses[backend] = seen
    assert len(losses["torch"]) == STEPS_PER_EPOCH
    np.testing.assert_allclose(losses["keras"], losses["torch"], rtol=1e-5)
    rows = {b: json.loads((tmp_path / b / "metrics.jsonl").read_text().splitlines()[0]) for b in losses}
    assert rows["keras"]["loss"] == pytest.approx(rows["torch"]["loss"], rel=1e-5)
    assert rows["keras"]["val_loss"] == pytest.approx(rows["torch"]["val_loss"], rel=1e-5)


def test_a_missing_training_section_or_bad_data_stops_before_training(tmp_path: Path) -> None:
    no_training = [sys.executable, "-m", "resnet_spec.cli", "train", str(REPO / "examples/resnet18.yaml"),
                   "--backend", "torch", "--data", "digits", "--out", str(tmp_path / "a")]  # fmt: skip
    proc = subprocess.run(no_training, capture_output=True, text=True, timeout=120, cwd=REPO, check=False, env=ENV)
    assert proc.returncode == 1 and "no `training` section" in proc.stderr and "Traceback" not in proc.stderr
    missing = _command(DIGITS, tmp_path / "missing", tmp_path / "b", "torch")
    proc = subprocess.run(missing, capture_output=True, text=True, timeout=120, cwd=REPO, check=False, env=ENV)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()  # the data is checked before the run directory is made
