"""Keras multi-worker training from the command line: ``resnet-spec train --workers-local 2``
starts two local TensorFlow workers (``TF_CONFIG`` on free loopback ports, written by the
launcher; ``MultiWorkerMirroredStrategy`` on the CPU), each reading only its shard of every
global batch from an image folder through tf.data; worker 0 alone writes the run directory, and
its weights equal those of one process with the same global batch (up to float32 summation
order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from distributed_specs import FOLDER, make_job
from image_folders import digits_folder

from resnet_spec.backends import get_backend
from resnet_spec.training import loop

pytestmark = [pytest.mark.keras, pytest.mark.slow]  # two TensorFlow start-ups: over a minute on a busy 2-core CPU

REPO = Path(__file__).resolve().parent.parent


def _weights(run: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    with h5py.File(run / "checkpoint" / "model.weights.h5", "r") as file:
        file.visititems(lambda name, item: values.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return values


def test_two_local_workers_from_the_command_line_equal_one_process(tmp_path: Path) -> None:
    folder = digits_folder(tmp_path / "digits")
    spec, out = tmp_path / "folder.json", tmp_path / "run"
    spec.write_text(json.dumps(FOLDER))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(REPO / "backends"), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    env.pop("TF_CONFIG", None)
    command = [sys.executable, "-m", "resnet_spec.cli", "train", str(spec), "--backend", "keras", "--data", str(folder),
               "--out", str(out), "--no-progress", "--workers-local", "2"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert done.stdout.count("test accuracy:") == 1  # worker 0 reports; worker 1's output is not shown
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5 and state["world_size"] == 2 and not list(out.glob(".*"))

    single = tmp_path / "single"
    loop.train(get_backend("keras"), make_job(single, FOLDER, str(folder)))
    ours, reference = _weights(out), _weights(single)
    assert ours.keys() == reference.keys() and ours
    for name, value in reference.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
