"""Keras multi-worker training: two local TensorFlow workers (``TF_CONFIG`` on loopback,
``MultiWorkerMirroredStrategy`` on the CPU) train the norm-free spec of the DDP tests; worker 0
alone writes its run directory, and its weights equal those of one process with the same global
batch (up to float32 summation order)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from distributed_specs import PLAIN, make_job

from resnet_spec.backends import get_backend

pytestmark = [pytest.mark.keras, pytest.mark.slow]  # two TensorFlow start-ups: over a minute on a busy 2-core CPU

WORKER = r"""
import json, os, sys
from pathlib import Path
index, ports, tests, out = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": index}})
sys.path.insert(0, tests)
from distributed_specs import PLAIN, make_job
from resnet_spec.backends import get_backend
evaluation = get_backend("keras").train(make_job(Path(out), PLAIN, extra={"strategy": "multi_worker"}))
print("accuracy", evaluation.accuracy)
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _weights(run: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    with h5py.File(run / "checkpoint" / "model.weights.h5", "r") as file:
        file.visititems(lambda name, item: values.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return values


def test_two_workers_equal_one_process(tmp_path: Path) -> None:
    ports = ",".join(map(str, _free_ports(2)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    tests = str(Path(__file__).resolve().parent)
    commands = [[sys.executable, "-c", WORKER, str(i), ports, tests, str(tmp_path / f"worker{i}")] for i in (0, 1)]
    workers = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, out[-2000:] + err[-4000:]
    accuracies = {line for out, _ in outputs for line in out.splitlines() if line.startswith("accuracy")}
    assert len(accuracies) == 1  # both workers evaluate the same synchronized model
    assert not list((tmp_path / "worker1").iterdir())  # only the chief writes its run directory
    assert json.loads((tmp_path / "worker0" / "checkpoint" / "state.json").read_text())["step"] == 5

    single = tmp_path / "single"
    get_backend("keras").train(make_job(single, PLAIN))
    ours, reference = _weights(tmp_path / "worker0"), _weights(single)
    assert ours.keys() == reference.keys() and ours
    for name, value in reference.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
