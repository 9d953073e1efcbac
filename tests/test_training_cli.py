"""The seed system's recipe through the real command: ``resnet-spec train
examples/resnet20_cifar10.yaml`` runs, unchanged, on a CIFAR-10 "python version" directory (a tiny
one written here in the real format); a PyTorch run imports neither TensorFlow nor Keras, and its
TensorBoard event file reads back; a Keras run imports no torch (tensorboardX would)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training_core import read_scalars

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "examples" / "resnet20_cifar10.yaml"
PER_BATCH = 8  # images per CIFAR file: 40 for training (4 held out for validation), 8 for testing
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]

# Runs `resnet-spec train` in this process, then reports which frameworks it imported.
PROBE = """
import sys
from resnet_spec.cli import main
code = main(sys.argv[1:])
print("frameworks:", sorted(m for m in ("tensorflow", "keras", "torch") if m in sys.modules))
sys.exit(code)
"""


def write_cifar10(folder: Path) -> Path:
    """data_batch_1..5, test_batch and batches.meta as CIFAR-10's python version pickles them
    (bytes keys, uint8 (N, 3072) rows of R, G, B planes, integer label lists)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = {
            b"batch_label": f"batch {index + 1} of 6".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, PER_BATCH)],
            b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            b"filenames": [f"image_{index}_{i}.png".encode() for i in range(PER_BATCH)],
        }  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": PER_BATCH, b"label_names": LABEL_NAMES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def train_recipe(backend: str, data: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", PROBE, "train", str(RECIPE), "--backend", backend, "--data", str(data),
               "--out", str(out), "--max-steps", "2", "--no-progress"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def check_run(out: Path, backend: str) -> None:
    """Two steps of batch 128 over 36 training images: two epochs, each logged and checkpointed."""
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == backend and len(result["confusion_matrix"]) == 10
    assert sum(map(sum, result["confusion_matrix"])) == PER_BATCH
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"], r["learning_rate"]) for r in rows] == [(1, 1, 0.1), (2, 2, 0.1)]
    assert all(r["val_loss"] is not None for r in rows)
    (events,) = out.glob("events.out.tfevents.*")
    scalars = read_scalars(events)
    assert scalars["loss"] == [(1, pytest.approx(rows[0]["loss"])), (2, pytest.approx(rows[1]["loss"]))]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("data") / "cifar-10-batches-py")


@pytest.mark.torch
def test_resnet20_recipe_trains_with_torch_without_tensorflow(cifar: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    done = train_recipe("torch", cifar, tmp_path / "run")
    assert "frameworks: ['torch']" in done.stdout
    check_run(tmp_path / "run", "torch")
    evaluated = subprocess.run([sys.executable, "-m", "resnet_spec.cli", "evaluate", str(tmp_path / "run"), "--data",
                                str(cifar)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    accuracy = json.loads((tmp_path / "run" / "result.json").read_text())["test_accuracy"]
    assert f"test accuracy: {accuracy:.2%}" in evaluated.stdout and "airplane" in evaluated.stdout


@pytest.mark.keras
def test_resnet20_recipe_trains_with_keras_without_torch(cifar: Path, tmp_path: Path) -> None:
    pytest.importorskip("keras")
    done = train_recipe("keras", cifar, tmp_path / "run")
    assert "frameworks: ['keras', 'tensorflow']" in done.stdout
    check_run(tmp_path / "run", "keras")


@pytest.mark.torch
@pytest.mark.parametrize(("example", "classes", "channels"), [("resnet18_xray", 2, 1), ("resnet50", 3, 3)])
def test_the_folder_recipes_run_on_an_image_folder(tmp_path: Path, example: str, classes: int, channels: int) -> None:
    """The chest X-ray recipe on grayscale JPEGs and the ImageNet recipe on colour ones, as the
    examples give them (but batch 4 and one step): random-resized crops of 240-330 pixel images to
    224, evaluation by resize + centre crop."""
    pytest.importorskip("torch")
    from image_folders import write_folder

    folder = write_folder(tmp_path / "images", per_class=4, classes=classes, sizes=(240, 330), channels=channels)
    command = [sys.executable, "-m", "resnet_spec.cli", "train", str(REPO / "examples" / f"{example}.yaml"),
               "--backend", "torch", "--data", str(folder), "--out", str(tmp_path / "run"), "--max-steps", "1",
               "--no-progress", "--workers", "1", "--set", "training.batch_size=4",
               "--set", f"classes={classes}"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert sum(map(sum, result["confusion_matrix"])) == 2 * classes  # every test image evaluated at 224x224
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 1
