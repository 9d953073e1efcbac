"""Training through the real command: an interrupted run (SIGKILL) resumes to the same final
weights as an uninterrupted one; both backends agree step for step on the learning rate and
the loss; data problems are reported before training starts."""

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

import resnet_spec
from resnet_spec.training.commands import train

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
# Small and short: two stages of one block, three epochs of 12 steps.
SMALL = ["training.epochs=3", "training.batch_size=128", "stages.0.blocks=1", "stages.1.blocks=1"]


def _command(out: Path, backend: str, *extra: str) -> list[str]:
    sets = [arg for item in SMALL for arg in ("--set", item)]
    return [sys.executable, "-m", "resnet_spec.cli", "train", str(DIGITS), "--backend", backend, "--data", "digits",
            "--out", str(out), "--no-progress", *sets, *extra]  # fmt: skip


def _final_state(run: Path) -> dict[str, Any]:
    import torch

    payload = torch.load(run / "checkpoint" / "training.pt", weights_only=True)
    return {k: v.numpy() for k, v in payload["model"].items()}


@pytest.mark.torch
@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_command(whole, "torch"), check=True, capture_output=True, timeout=600, cwd=REPO)

    proc = subprocess.Popen(_command(broken, "torch"), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = broken / "checkpoint" / "state.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["epoch"] < 3

    subprocess.run(_command(broken, "torch", "--resume"), check=True, capture_output=True, timeout=600, cwd=REPO)
    a, b = _final_state(whole), _final_state(broken)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    logged = [json.loads(line)["epoch"] for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]  # the killed epoch is logged once, after the resume


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


def test_a_missing_training_section_or_bad_data_stops_before_training(tmp_path: Path) -> None:
    no_training = [sys.executable, "-m", "resnet_spec.cli", "train", str(REPO / "examples/resnet18.yaml"),
                   "--backend", "torch", "--data", "digits", "--out", str(tmp_path / "a")]  # fmt: skip
    proc = subprocess.run(no_training, capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 1 and "no `training` section" in proc.stderr and "Traceback" not in proc.stderr
    wrong_shape = _command(tmp_path / "b", "torch")
    wrong_shape[wrong_shape.index("digits")] = str(tmp_path / "missing")
    proc = subprocess.run(wrong_shape, capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
