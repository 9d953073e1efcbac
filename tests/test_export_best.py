"""``train`` keeps the checkpoint of the best validated epoch (``RUN/checkpoint-best/``) and
``export --checkpoint best`` writes it, in both backends.

One tiny run per backend (the digits ResNet, 40 random 8x8 images, 4 held out for validation,
3 steps an epoch): stopped by ``--max-steps 4`` one step into epoch 2, so that the best checkpoint
(epoch 1) and the last one (step 4) differ, then resumed to the end of epoch 2. The reference
weights are each epoch's own checkpoint files, copied aside while the run was there and read with
plain torch / Keras calls."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from resnet_spec.cli import main
from resnet_spec.pipeline import build_architecture
from resnet_spec.training import checkpoint

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("tensorflow") is not None
SPE = 3  # 36 training examples in batches of 16


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 17, (40, 8, 8, 1)).astype(np.float32), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 17, (20, 8, 8, 1)).astype(np.float32), y_test=np.arange(20) % 10)  # fmt: skip
    return path


def _train(backend: str, data: Path, out: Path, *extra: str) -> None:
    assert main(["train", str(DIGITS), "--backend", backend, "--data", str(data), "--out", str(out), "--epochs", "2",
                 "--batch-size", "16", "--lr", "0.01", "--no-progress", *extra]) == 0  # fmt: skip


def _weights(backend: str, folder_or_file: Path, run: Path) -> list[np.ndarray]:
    """A checkpoint folder's weights read with plain framework calls, or an exported file's."""
    arch = build_architecture(run / "spec.yaml")
    if backend == "torch":
        import torch

        if folder_or_file.is_dir():
            state = torch.load(folder_or_file / "training.pt", weights_only=True)["model"]
        else:
            from resnet_spec_torch.io import load

            state = load(folder_or_file)[0].state_dict()
        return [t.numpy().copy() for t in state.values()]
    from resnet_spec_keras.io import load
    from resnet_spec_keras.model import build_model

    if folder_or_file.is_dir():
        model = build_model(arch)
        model.load_weights(folder_or_file / "model.weights.h5")
    else:
        model = load(folder_or_file)[0]
    return [np.asarray(w) for w in model.get_weights()]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _best_epoch(run: Path) -> int:
    """The rule, written again: the highest validation accuracy, then the lowest loss, then the earliest."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return min(rows, key=lambda r: (-r["val_accuracy"], r["val_loss"], r["epoch"]))["epoch"]


def _export(run: Path, which: str, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["export", str(run), "--checkpoint", which, "-o", str(out)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("backend", [
    pytest.param("torch", marks=[pytest.mark.torch, pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")]),
    pytest.param("keras", marks=[pytest.mark.keras, pytest.mark.skipif(not HAVE_KERAS, reason="needs Keras")]),
])  # fmt: skip
def test_best_checkpoint_is_the_best_epochs_and_survives_resume(backend: str, data: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run, suffix = tmp_path / "run", ".pt" if backend == "torch" else ".keras"
    _train(backend, data, run, "--max-steps", "4")
    epoch1 = tmp_path / "epoch1"
    shutil.copytree(run / "checkpoint.previous", epoch1)  # step 3, the end of epoch 1 (a real copy)
    assert checkpoint.read_state(epoch1)["step"] == SPE and checkpoint.read_state(run / "checkpoint")["step"] == 4
    best = checkpoint.read_state(run / "checkpoint-best")
    assert checkpoint.problem(run / "checkpoint-best") is None  # the digests of the latest one's files
    assert best["step"] == SPE and best["files"] == checkpoint.read_state(epoch1)["files"]
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert best["validation"] == {"accuracy": row["val_accuracy"], "loss": row["val_loss"]}
    printed = _export(run, "best", tmp_path / f"best1{suffix}", capsys)
    assert "best checkpoint, step 3" in printed
    _export(run, "last", tmp_path / f"last1{suffix}", capsys)
    exported, last = _weights(backend, tmp_path / f"best1{suffix}", run), _weights(backend, tmp_path / f"last1{suffix}", run)
    assert _same(exported, _weights(backend, epoch1, run)) and not _same(exported, last)

    _train(backend, data, run, "--resume")  # to the end of epoch 2
    capsys.readouterr()
    epoch2 = run / "checkpoint"
    chosen = _best_epoch(run)
    reference = epoch1 if chosen == 1 else epoch2
    best = checkpoint.read_state(run / "checkpoint-best")
    assert best["step"] == chosen * SPE and best["files"] == checkpoint.read_state(reference)["files"]
    _export(run, "best", tmp_path / f"best{suffix}", capsys)
    assert _same(_weights(backend, tmp_path / f"best{suffix}", run), _weights(backend, reference, run))


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_a_run_without_validation_has_no_best_and_export_says_why(data: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    spec = tmp_path / "digits.yaml"
    spec.write_text(DIGITS.read_text().replace("validation_split: 0.1", "validation_split: 0.0"))
    run = tmp_path / "run"
    assert main(["train", str(spec), "--backend", "torch", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "20", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert (run / "checkpoint").is_dir() and not (run / "checkpoint-best").exists()
    assert main(["export", str(run), "--checkpoint", "best", "-o", str(tmp_path / "m.pt")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {run}: no best checkpoint") and "no validation data" in line
    assert "--checkpoint last" in line and not (tmp_path / "m.pt").exists()


def test_better_is_accuracy_then_loss_then_the_earlier_epoch() -> None:
    from resnet_spec.training.loop import better

    assert better((0.5, 9.0), None) and better((0.5, 9.0), (0.25, 1.0)) and not better((0.25, 1.0), (0.5, 9.0))
    assert better((0.5, 1.0), (0.5, 2.0)) and not better((0.5, 2.0), (0.5, 1.0))
    assert not better((0.5, 1.0), (0.5, 1.0)) and not better((0.5, float("nan")), (0.5, 1.0))
