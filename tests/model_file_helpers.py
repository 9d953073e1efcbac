"""Shared by the model-file and command-failure tests: a tiny spec, running the CLI in-process
with a deadline, and the checks every refusal must pass (exit status, one line naming the
problem, no traceback, nothing changed outside the target)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from resnet_spec.cli import main

TINY = {
    "version": 1, "name": "tinyfile", "input": {"height": 8, "width": 8, "channels": 3}, "classes": 3,
    "stem": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "filters": 4, "blocks": 1, "stride": 1}],
}  # fmt: skip


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every entry under the folders: (size, mtime in ns); FIFOs and devices are not read."""
    found: dict[str, tuple[int, int]] = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                stat = os.lstat(os.path.join(root, name))
                found[os.path.join(root, name)] = (stat.st_size, stat.st_mtime_ns)
    return found


def run_cli(capsys, argv: list[str], seconds: float = 120) -> tuple[int, str, str]:
    with deadline(seconds):
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, argv: list[str], match: str, folders: list[Path], status: int = 1) -> str:
    """Run a command that must fail: ``status``, one ``error:`` line matching ``match``, no
    traceback, nothing created, removed or modified under ``folders``. Returns the error line."""
    before = snapshot(*folders)
    code, out, err = run_cli(capsys, argv)
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert [line for line in lines if not line.startswith("warning: ")] == [lines[-1]], err  # one line
    assert re.search(match, lines[-1]), lines[-1]
    assert code == status, (code, err)
    assert "\x1b" not in out + err
    assert snapshot(*folders) == before
    return lines[-1]


def rewrite_zip(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None],
                add: dict[str, bytes] | None = None) -> Path:  # fmt: skip
    """Copy an archive member by member; ``change(name, data)`` returns the new data or None
    to drop the member."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for item in old.infolist():
            data = change(item.filename, old.read(item.filename))
            if data is not None:
                new.writestr(item, data)
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return dst


def deflated_bomb(src: Path | None, dst: Path, name: str, mib: int) -> Path:
    """A copy of the archive ``src`` (or an empty one) whose member ``name`` (replaced or added)
    holds ``mib`` MiB of zeros, deflated (about 1 kB per MiB) and streamed: making it costs no
    memory."""
    with zipfile.ZipFile(dst, "w") as new:
        if src is not None:
            with zipfile.ZipFile(src) as old:
                for item in old.infolist():
                    if item.filename != name:
                        new.writestr(item, old.read(item.filename))
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(2**20)
        with new.open(info, "w", force_zip64=True) as handle:
            for _ in range(mib):
                handle.write(chunk)
    return dst


def declare(path: Path, suffix: str, size: int) -> Path:
    """Rewrite the central-directory entry of the member ending in ``suffix`` to declare
    ``size`` uncompressed bytes (a zip bomb's lie; the data stays small)."""
    data = bytearray(path.read_bytes())
    position, found = data.find(b"PK\x01\x02"), False
    while position != -1:
        length = struct.unpack_from("<H", data, position + 28)[0]
        if bytes(data[position + 46 : position + 46 + length]).decode().endswith(suffix):
            struct.pack_into("<I", data, position + 24, size)
            found = True
        position = data.find(b"PK\x01\x02", position + 46)
    assert found, suffix
    path.write_bytes(bytes(data))
    return path
