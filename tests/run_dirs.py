"""Helpers of the run-directory and checkpoint tests: a tiny spec and data set, a run directory
made without training (run.json and checkpoints as `train` writes them), snapshots of folders
and the CLI called in-process with its exit status."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import resnet_spec
from resnet_spec.cli import main
from resnet_spec.training import checkpoint, run_state

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
# Two stages of one block, two epochs of 3 steps (36 training images of the tiny set, batches of 16).
TINY = ["stages.0.blocks=1", "stages.1.blocks=1", "training.epochs=2", "training.batch_size=16"]
STEPS_PER_EPOCH = 3


def tiny_data(folder: Path) -> Path:
    """40 training and 20 test images in the digits' shape (8x8x1, 10 classes)."""
    rng = np.random.default_rng(0)
    path = folder / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 17, (40, 8, 8, 1)).astype(np.float32), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 17, (20, 8, 8, 1)).astype(np.float32), y_test=np.arange(20) % 10)  # fmt: skip
    return path


def architecture(overrides: list[str] | None = None) -> Any:
    result = resnet_spec.validate(DIGITS, overrides=TINY + (overrides or []))
    assert result.architecture is not None, result.report
    return result.architecture


def train_args(data: Path, out: Path | str, *extra: str, sets: list[str] | None = None) -> list[str]:
    args = ["train", str(DIGITS), "--backend", "torch", "--data", str(data), "--out", str(out), "--no-progress"]
    for item in TINY + (sets or []):
        args += ["--set", item]
    return args + list(extra)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``resnet-spec ARGS`` in this process: (exit status, standard output, standard error);
    argparse's usage errors give their status too. An exception (a traceback) fails the test."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's sha256, "dir", a link's target, a FIFO's mode."""
    found: dict[str, str] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[key] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            found[key] = "dir"
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:  # a FIFO, a socket: never opened (a FIFO would block)
            found[key] = f"special {path.stat().st_mode:o}"
    return found


def fake_run(out: Path, *, steps: tuple[int, ...] = (3,), overrides: list[str] | None = None, backend: str = "torch",
             status: str = "finished", result: bool = True) -> Path:  # fmt: skip
    """A run directory as `train` leaves it, without training: run.json with the recipe of the
    tiny spec (with ``overrides``), a checkpoint per step of ``steps`` (the last two kept), result.json."""
    arch = architecture(overrides)
    out.mkdir(parents=True, exist_ok=True)
    run_state.write_meta(out, {"backend": backend, "hash": arch.hash, "data": "tiny.npz", "preprocessor": {},
                               "status": status, "recipe": run_state.recipe_of(arch.spec.training)})  # fmt: skip
    (out / "spec.yaml").write_text("version: 1\n")
    for step in steps:
        state = {"backend": backend, "hash": arch.hash, "step": step, "epoch": step // STEPS_PER_EPOCH,
                 "steps_per_epoch": STEPS_PER_EPOCH, "epoch_sums": [0.0, 0.0, 0.0], "preprocessor": {}}  # fmt: skip
        checkpoint.save(out / "checkpoint", lambda folder, step=step: (folder / "training.pt").write_bytes(
            bytes(range(256)) * 4 + str(step).encode()), state)  # fmt: skip
    if result:
        (out / "result.json").write_text(json.dumps({"test_accuracy": 0.5}))
    return out


def assert_refused(code: int, err: str, status: int, *needles: str) -> None:
    """One ``error:`` line naming the problem, the exit status, no traceback."""
    assert code == status, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:") or "usage:" in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
