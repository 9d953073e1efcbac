"""Data-parallel training with the PyTorch trainer under ``torchrun`` (two CPU processes, gloo
over loopback): it finishes, every rank ends with the same weights, rank 0 alone writes the run
directory, and the result equals a single-process run with the same global batch, from data in
memory and from an image folder (each rank's DataLoader decoding only its shard of every global
batch, random-resized crops included); ``resnet-spec train --workers-local 2`` starts the same.

Equality is checked on a spec without batch norms: with norms each rank normalizes its half of
the batch with that half's statistics (DDP without SyncBatchNorm), which is a different function
of the weights than one norm over the whole batch, so no implementation can match there. The
spec with norms is checked for finishing and for identical weights on every rank."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from distributed_specs import FOLDER, NORMS, PLAIN, make_job
from image_folders import digits_folder

from resnet_spec.backends import get_backend
from resnet_spec.training import loop
from resnet_spec.training.job import TrainingJob

pytestmark = [pytest.mark.torch, pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo on POSIX")]

# Run by every rank: the three specs, one after the other, in one process group (so one launch).
SCRIPT = r"""
import json, os, sys
from pathlib import Path
import torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from distributed_specs import make_job
from resnet_spec.backends import get_backend
from resnet_spec.training import loop
backend = get_backend("torch")
dist.init_process_group("gloo")
rank = dist.get_rank()
for name in ("plain", "norms", "folder"):
    spec = json.loads(Path(sys.argv[2], name + ".json").read_text())
    source = sys.argv[3] if name == "folder" else "digits"
    job = make_job(Path(sys.argv[2], name), spec, source)
    evaluation = loop.train(backend, job)
    state = {k: v.detach().cpu() for k, v in job.extra["model"].state_dict().items()}
    torch.save(state, Path(sys.argv[2], f"{name}-rank{rank}.pt"))
    Path(sys.argv[2], f"{name}-rank{rank}.json").write_text(json.dumps({"accuracy": evaluation.accuracy}))
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun`` with two CPU processes on loopback; fails the test when it fails."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [torchrun, "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
               *args]  # fmt: skip
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "plain.json").write_text(json.dumps(PLAIN))
    (folder / "norms.json").write_text(json.dumps(NORMS))
    (folder / "folder.json").write_text(json.dumps(FOLDER))
    digits_folder(folder / "digits")
    script = folder / "ddp_script.py"
    script.write_text(SCRIPT)
    _torchrun(str(script), str(Path(__file__).resolve().parent), str(folder), str(folder / "digits"))
    return folder


def _state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ranks_end_with_identical_weights(ddp_run: Path) -> None:
    for name in ("plain", "norms", "folder"):
        first, second = _state(ddp_run / f"{name}-rank0.pt"), _state(ddp_run / f"{name}-rank1.pt")
        for key, value in first.items():
            assert torch.equal(value, second[key]), f"{name}: {key}"
        accuracies = [json.loads((ddp_run / f"{name}-rank{r}.json").read_text())["accuracy"] for r in (0, 1)]
        assert accuracies[0] == accuracies[1]


def test_rank_zero_alone_writes_the_run_directory(ddp_run: Path) -> None:
    for name, steps in (("plain", 5), ("norms", 3), ("folder", 5)):
        state = json.loads((ddp_run / name / "checkpoint" / "state.json").read_text())
        assert state["step"] == steps and state["world_size"] == 2
        assert not [p for p in (ddp_run / name).iterdir() if p.name.startswith(".")]
        saved = _state(ddp_run / name / "checkpoint" / "training.pt")
        assert len(saved["rng"]) == 2  # every rank's random state, for an exact resume
        for key, value in _state(ddp_run / f"{name}-rank0.pt").items():
            assert torch.equal(saved["model"][key], value), key


@pytest.mark.parametrize("name", ["plain", "folder"])
def test_two_ranks_equal_one_process_with_the_same_global_batch(ddp_run: Path, tmp_path: Path, name: str) -> None:
    spec, source = (PLAIN, "digits") if name == "plain" else (FOLDER, str(ddp_run / "digits"))
    job = make_job(tmp_path / "single", spec, source)
    loop.train(get_backend("torch"), job)
    single = {k: v.detach().cpu() for k, v in job.extra["model"].state_dict().items()}
    distributed = _state(ddp_run / f"{name}-rank0.pt")
    assert single.keys() == distributed.keys()
    moved = 0.0
    start = make_job(tmp_path / "start", spec, source)
    for key, value in single.items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-5, atol=1e-5, msg=key)
        moved = max(moved, float((value - _initial(start, key)).abs().max()))
    assert moved > 1e-3  # the runs trained: equality is not that of two untouched networks


def test_the_train_command_under_torchrun(ddp_run: Path, tmp_path: Path) -> None:
    """``torchrun -m resnet_spec.cli train`` on the image folder: rank 0 alone writes the run
    directory (one metrics row, one event file), and the weights equal the Python API's DDP run's."""
    spec, out = tmp_path / "folder.json", tmp_path / "run"
    spec.write_text(json.dumps(FOLDER))
    done = _torchrun("-m", "resnet_spec.cli", "train", str(spec), "--backend", "torch", "--data", str(ddp_run / "digits"),
                     "--out", str(out), "--no-progress", "--set", "training.tensorboard=true")  # fmt: skip
    assert done.stdout.count("test accuracy:") == 1  # printed by rank 0 only
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("events.")) == [
        "checkpoint", "curves.png", "metrics.csv", "metrics.jsonl", "result.json", "run.json", "spec.yaml"]
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # 5 steps: one (short) epoch
    assert json.loads((out / "checkpoint" / "state.json").read_text())["world_size"] == 2
    saved = _state(out / "checkpoint" / "training.pt")["model"]
    for key, value in _state(ddp_run / "folder-rank0.pt").items():
        assert torch.equal(saved[key], value), key


@pytest.mark.slow
def test_workers_local_starts_torchrun(ddp_run: Path, tmp_path: Path) -> None:
    """``resnet-spec train --workers-local 2`` is ``torchrun --standalone --nproc_per_node 2``."""
    spec, out = tmp_path / "folder.json", tmp_path / "run"
    spec.write_text(json.dumps(FOLDER))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "backends"),
        os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [sys.executable, "-m", "resnet_spec.cli", "train", str(spec), "--backend", "torch", "--data",
               str(ddp_run / "digits"), "--out", str(out), "--no-progress", "--workers-local", "2"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("test accuracy:") == 1
    assert json.loads((out / "checkpoint" / "state.json").read_text())["world_size"] == 2
    saved = _state(out / "checkpoint" / "training.pt")["model"]
    for key, value in _state(ddp_run / "folder-rank0.pt").items():
        assert torch.equal(saved[key], value), key


def _initial(job: TrainingJob, key: str) -> Any:
    from resnet_spec_torch.model import build_module

    from resnet_spec.weights import initial_weights

    model = build_module(job.arch)
    get_backend("torch").set_weights(model, job.arch, initial_weights(job.arch, job.arch.spec.training.seed))
    return model.state_dict()[key]


@pytest.mark.slow
@pytest.mark.exhaustive  # 1-2 minutes on 2 cores: not in the default run
def test_ctrl_c_under_workers_local_saves_a_checkpoint_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C reaches the launcher, torchrun and both ranks (one process group, as in a terminal):
    the ranks finish their step and save; the run ends with status 130 and one line saying how to
    resume (with ``--workers-local 2``), never torchrun's traceback; the resumed run goes on from
    that step."""
    import signal
    import time

    spec, out = tmp_path / "long.json", tmp_path / "run"
    spec.write_text(json.dumps({**PLAIN, "training": {**PLAIN["training"], "iterations": 100_000}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "backends"),
        os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [sys.executable, "-m", "resnet_spec.cli", "train", str(spec), "--backend", "torch", "--data", "digits",
               "--out", str(out), "--no-progress", "--workers-local", "2"]  # fmt: skip
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # an epoch has ended: both ranks are training
    os.killpg(run.pid, signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stdout[-2000:] + stderr[-4000:]
    assert "Traceback" not in stderr and "SignalException" not in stderr, stderr[-4000:]
    interrupted = [line for line in stderr.splitlines() if line.startswith("interrupted after step")]
    assert len(interrupted) == 1 and interrupted[0].endswith("--workers-local 2 --resume"), stderr[-3000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] > 0
    done = subprocess.run([*command, "--resume", "--max-steps", str(state["step"] + 2)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"resumed at step {state['step']}" in done.stdout + done.stderr
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == state["step"] + 2


def test_a_wrong_input_under_workers_local_is_one_line_before_any_worker(tmp_path: Path) -> None:
    spec, out = tmp_path / "plain.json", tmp_path / "run"
    spec.write_text(json.dumps(PLAIN))
    done = subprocess.run([sys.executable, "-m", "resnet_spec.cli", "train", str(spec), "--backend", "torch", "--data",
                           str(tmp_path / "missing"), "--out", str(out), "--workers-local", "2"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: data path {tmp_path / 'missing'} does not exist"]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.exhaustive  # 1-2 minutes on 2 cores: not in the default run
def test_two_nodes_on_loopback_equal_one_node_with_two_ranks(ddp_run: Path, tmp_path: Path) -> None:
    """The multi-node command of docs/training.md (``--nnodes=2 --node_rank=R --master_addr``, the
    c10d rendezvous), both nodes on this machine with one rank each: the weights of the one-node,
    two-rank run, bit for bit."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    spec, out = tmp_path / "folder.json", tmp_path / "run"
    spec.write_text(json.dumps(FOLDER))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    port = _free_port()
    nodes = [subprocess.Popen([torchrun, "--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1",
                               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "resnet_spec.cli", "train",
                               str(spec), "--backend", "torch", "--data", str(ddp_run / "digits"), "--out", str(out),
                               "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]  # fmt: skip
    ends = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [e[1][-3000:] for e in ends]
    assert "".join(e[0] for e in ends).count("test accuracy:") == 1  # global rank 0 alone reports
    assert json.loads((out / "checkpoint" / "state.json").read_text())["world_size"] == 2
    saved = _state(out / "checkpoint" / "training.pt")["model"]
    for key, value in _state(ddp_run / "folder-rank0.pt").items():
        assert torch.equal(saved[key], value), key
