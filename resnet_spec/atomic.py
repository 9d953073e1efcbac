"""Atomic file writes: write to a temporary file beside the target, then rename over it, so a
crash or a full disk never leaves a half-written model or checkpoint behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder (same suffix); on success rename it to the
    target, on failure remove it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; the finished file should have the permissions a plain write gives.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def unwritable(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (atomically: a temporary file beside it, then a
    rename), or None. Tried for real in the target's folder: permissions alone do not say it (root
    ignores them, a read-only mount or ``/proc`` refuses what they allow)."""
    if str(path) in ("", "."):
        return "the output name is empty; give a file name"
    if path.is_dir():
        return f"{path} is a directory; give a file name inside it"
    if path.exists() and not path.is_file():
        return f"{path} exists and is not a regular file (a device, FIFO or socket); give a file name"
    parent = path.parent
    if not parent.exists():
        return f"{path}: the folder {parent} does not exist; create it first"
    if not parent.is_dir():
        return f"{path}: {parent} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        return f"{path}: cannot write in {parent} ({exc.strerror or type(exc).__name__}); choose another output"
    os.close(fd)
    os.unlink(probe)
    return None
