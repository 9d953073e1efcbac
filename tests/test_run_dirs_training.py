"""Run directories and checkpoints through real (tiny) training runs: divergence stops the run
naming the step and the last good checkpoint (or trains on when the recipe says so); a damaged
latest checkpoint is reported and the previous one resumed, with TensorBoard holding every step
once; an allowed recipe change is recorded; and SIGKILL before the first checkpoint or in the
middle of a checkpoint write leaves a folder that a fresh start (resp. ``--resume``) accepts, in
both backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from run_dirs import REPO, STEPS_PER_EPOCH, assert_refused, cli, snapshot, tiny_data, train_args
from test_training_core import read_scalars

from resnet_spec.training import checkpoint, run_state

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set's shape with finite pixels around 1e33: scaled by 1e6 (``LOUD``) they overflow
    float32, and the loss is NaN from the first step."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("huge") / "huge.npz"
    np.savez(path, x_train=(rng.standard_normal((40, 8, 8, 1)) * 1e33).astype(np.float32), y_train=np.arange(40) % 10,
             x_test=(rng.standard_normal((20, 8, 8, 1)) * 1e33).astype(np.float32), y_test=np.arange(20) % 10)  # fmt: skip
    return path


LOUD = ["training.preprocessing.scale=1e6"]


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_divergence_stops_naming_the_step_and_the_last_good_checkpoint(data: Path, huge: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("torch")
    out = tmp_path / "run"
    code, _, err = cli(train_args(data, out, "--max-steps", str(STEPS_PER_EPOCH), sets=LOUD), capsys)
    assert code == 0, err
    good = snapshot(out / "checkpoint")
    # The same run resumed on data that makes it diverge at its first step (step 4, epoch 2), asked
    # for a checkpoint every step: the loss is checked before each, so the step is named exactly,
    # and no checkpoint of the diverged weights replaces step 3's.
    code, _, err = cli(train_args(huge, out, "--resume", "--checkpoint-every", "1", sets=LOUD), capsys)
    assert_refused(code, err, 1, "training diverged: the loss became NaN at step 4 (epoch 2)",
                   f"the last good checkpoint, {out / 'checkpoint'} (step 3), is kept: --resume continues from it",
                   "training.on_divergence: continue")  # fmt: skip
    assert snapshot(out / "checkpoint") == good and checkpoint.problem(out / "checkpoint") is None
    assert _steps(out) == [3]  # the diverged epoch is not logged
    assert json.loads((out / "run.json").read_text())["status"] == "diverged"


def test_divergence_before_any_checkpoint_then_a_fresh_start(data: Path, huge: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("torch")
    out = tmp_path / "run"
    code, _, err = cli(train_args(huge, out, sets=LOUD), capsys)
    assert_refused(code, err, 1, "the loss became NaN in steps 1-3 (epoch 1)", "no checkpoint was saved before it")
    assert not (out / "checkpoint").exists() and not (out / run_state.LOCK_FILE).exists()
    code, _, err = cli(train_args(data, out), capsys)  # nothing to lose: the folder is started afresh
    assert code == 0, err
    assert _steps(out) == [3, 6] and json.loads((out / "run.json").read_text())["status"] == "finished"


def test_on_divergence_continue_warns_once_and_trains_on(huge: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("torch")
    code, _, err = cli(train_args(huge, tmp_path / "run", sets=[*LOUD, "training.on_divergence=continue"]), capsys)
    assert code == 0, err
    assert err.count("warning: training diverged") == 1 and "training on (training.on_divergence: continue)" in err


def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one(data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Checkpoints at steps 3 and 6 of 9; flipped bytes in step 6's weights: one warning line,
    resumed at step 3, the damaged one kept aside, and every step once in metrics and events."""
    pytest.importorskip("torch")
    out = tmp_path / "run"
    code, _, err = cli(train_args(data, out, "--max-steps", "6", sets=["training.epochs=3"]), capsys)
    assert code == 0, err
    weights = out / "checkpoint" / "training.pt"
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    code, _, err = cli(train_args(data, out, "--resume", sets=["training.epochs=3"]), capsys)
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "training.pt differs from its recorded sha256" in warning and "kept as checkpoint.corrupt" in warning
    assert "resumed at step 3 " in err and "Traceback" not in err
    assert checkpoint.read_state(out / "checkpoint")["step"] == 9 and (out / "checkpoint.corrupt").is_dir()
    assert _steps(out) == [3, 6, 9]
    logged = [step for file in sorted(out.glob("events.out.tfevents.*")) for step, _ in read_scalars(file)["loss"]]
    assert sorted(logged) == [3, 6, 9]  # the interrupted run's step 6 was cut from its event file


def test_an_allowed_recipe_change_continues_and_is_recorded(data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("torch")
    out = tmp_path / "run"
    assert cli(train_args(data, out), capsys)[0] == 0
    before = snapshot(tmp_path)
    code, _, err = cli(train_args(data, out, "--resume", "--epochs", "3"), capsys)
    assert_refused(code, err, 1, "training.epochs: 2 in the run, 3 now", "--allow-recipe-change")
    assert snapshot(tmp_path) == before
    code, out_text, err = cli(train_args(data, out, "--resume", "--epochs", "3", "--allow-recipe-change"), capsys)
    assert code == 0, err
    assert "epoch 3/3" in out_text and _steps(out) == [3, 6, 9]
    meta = json.loads((out / "run.json").read_text())
    assert meta["recipe"]["epochs"] == 3 and meta["recipe_changes"][0]["changed"] == ["training.epochs: 2 in the run, 3 now"]
    assert "epochs: 3" in (out / "spec.yaml").read_text()


@pytest.mark.parametrize("out", ["/proc/resnet-spec-run", "/proc/self/run"], ids=["proc", "proc-self"])
def test_a_run_directory_that_cannot_be_made_is_one_line(out: str, data: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("torch")
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    code, _, err = cli(train_args(data, out), capsys)
    assert_refused(code, err, 1, f"{out}: cannot create the run directory", "choose another --out")


# ---------------------------------------------------------------------------- SIGKILL

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "backends"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def _command(data: Path, out: Path, backend: str, *extra: str) -> list[str]:
    args = train_args(data, out, *extra)
    args[args.index("--backend") + 1] = backend
    return [sys.executable, "-m", "resnet_spec.cli", *args]


def _kill_inside_the_first_write(data: Path, out: Path, backend: str) -> None:
    """Start a train that pauses inside the write of its first checkpoint (the backend's files
    written, state.json not yet); SIGKILL it there."""
    step = STEPS_PER_EPOCH
    env = {**ENV, checkpoint.PAUSE_VARIABLE: str(step)}
    proc = subprocess.Popen(_command(data, out, backend), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in out.glob(".checkpoint.tmp-*") if any(p.iterdir()) and not (p / "state.json").exists()]
            if partial:
                time.sleep(0.5)  # let the backend's write finish its files: the pause follows it
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the run never reached the write of step {step}: {proc.communicate()[1][-2000:]}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _run(data: Path, out: Path, backend: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(data, out, backend, *extra), cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_sigkill_in_the_first_checkpoint_write_leaves_a_folder_a_fresh_start_accepts(
        backend: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip(backend if backend == "torch" else "tensorflow")
    out = tmp_path / "run"
    _kill_inside_the_first_write(data, out, backend)
    assert not (out / "checkpoint").exists() and (out / "run.json").is_file()
    resume = train_args(data, out, "--resume")
    resume[resume.index("--backend") + 1] = backend
    code, _, err = cli(resume, capsys)  # refused before any framework is loaded: in this process
    assert_refused(code, err, 1, "nothing to resume: the run stopped before its first checkpoint", "without --resume")
    done = _run(data, out, backend)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _steps(out) == [3, 6] and not list(out.glob(".checkpoint.*"))
    # checkpoint-best.previous only where epoch 2 validated better than epoch 1
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("events.") and
                  p.name != "checkpoint-best.previous") == [
        "checkpoint", "checkpoint-best", "checkpoint.previous", "curves.png", "metrics.csv", "metrics.jsonl",
        "result.json", "run.json", "spec.yaml"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_sigkill_in_a_later_checkpoint_write_resumes_from_the_last_complete_one(
        backend: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Killed in the write of step 6 (the first checkpoint, step 3, complete); meanwhile a second
    train into the folder is refused naming the first one's pid."""
    pytest.importorskip(backend if backend == "torch" else "tensorflow")
    out = tmp_path / "run"
    env = {**ENV, checkpoint.PAUSE_VARIABLE: str(2 * STEPS_PER_EPOCH)}
    proc = subprocess.Popen(_command(data, out, backend), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "checkpoint" / "state.json").is_file() and any(out.glob(".checkpoint.tmp-*/*")):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, "the run ended before the write of step 6"
        before = snapshot(tmp_path)
        code, _, err = cli(train_args(data, out), capsys)
        assert_refused(code, err, 1, f"is in use by another train (pid {proc.pid})")
        assert snapshot(tmp_path) == before
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert checkpoint.read_state(out / "checkpoint")["step"] == STEPS_PER_EPOCH
    done = _run(data, out, backend, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed at step {STEPS_PER_EPOCH} " in done.stderr and "Traceback" not in done.stderr
    assert _steps(out) == [3, 6] and checkpoint.read_state(out / "checkpoint")["step"] == 6
    assert not list(out.glob(".checkpoint.*")) and not (out / run_state.LOCK_FILE).exists()
