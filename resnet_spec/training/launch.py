"""``resnet-spec train --workers-local N``: data-parallel training in N local processes, started
with each framework's own launcher, with nothing to configure by hand.

* PyTorch: ``python -m resnet_spec_torch.torchrun --standalone --nproc_per_node N -m
  resnet_spec.cli train ...``: torchrun itself (a rendezvous on a free local port; gloo on CPUs,
  NCCL on GPUs), ending in one line instead of torchrun's traceback on Ctrl-C or a failed worker;
* Keras: N processes of ``python -m resnet_spec.cli train ...``, each with its own ``TF_CONFIG``
  (a cluster of N workers on free loopback ports, ``task.index`` = its rank), so the trainer runs
  ``tf.distribute.MultiWorkerMirroredStrategy``.

The workers share the ``--out`` folder: worker 0 writes it. Worker 0's output is shown; the
others' standard output is discarded and their errors are shown. The launcher ignores Ctrl-C
while it waits (the workers receive it too, save a checkpoint and stop) and returns the first
non-zero exit status of a worker, else 0. Each worker is told the command that started it
(``RESNET_SPEC_COMMAND``), so an interrupted run's "resume with" names ``--workers-local`` too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

GRACE_SECONDS = 60  # after a worker fails, the others get this long to stop before they are killed


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


COMMAND_VARIABLE = "RESNET_SPEC_COMMAND"  # the command line a worker reports as its own (JSON list)


def local_workers(count: int, backend: str, argv: Sequence[str], command_line: Sequence[str]) -> int:
    """Run ``resnet-spec`` with ``argv`` (a train command without ``--workers-local``) in ``count``
    local processes; the exit status of the run. ``command_line``: what the user typed."""
    command = [sys.executable, "-m", "resnet_spec.cli", *argv]
    told = {**os.environ, COMMAND_VARIABLE: json.dumps(list(command_line))}
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if backend == "torch":
            launcher = [sys.executable, "-m", "resnet_spec_torch.torchrun", "--standalone", f"--nproc_per_node={count}",
                        "-m", "resnet_spec.cli", *argv]  # fmt: skip
            return subprocess.call(launcher, env=told)
        ports = free_ports(count)
        workers = []
        for index in range(count):
            config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
            env = {**told, "TF_CONFIG": json.dumps(config)}
            stdout = None if index == 0 else subprocess.DEVNULL
            workers.append(subprocess.Popen(command, env=env, stdout=stdout))
        return _wait(workers)
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait(workers: list[subprocess.Popen[bytes]]) -> int:
    """Wait for every worker; once one fails, the others (who would wait for it in a collective
    for ever) are asked to stop (SIGTERM: they save and stop if they can), then killed."""
    failed_at = None
    while True:
        codes = [worker.poll() for worker in workers]
        if all(code is not None for code in codes):
            return next((code for code in codes if code), 0)
        if failed_at is None and any(code for code in codes):
            failed_at = time.monotonic()
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
        time.sleep(0.2)
