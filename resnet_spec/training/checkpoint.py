"""The run directory's checkpoint folder and its atomic replacement, for every backend.

A backend writes its files (weights, optimizer, random states: its own formats) into a fresh
folder; ``state.json`` (step, epochs, the preprocessor, the architecture hash) is written last,
so its presence marks a complete checkpoint.

Replacement: the new checkpoint is written and fsynced in a temporary sibling
``.checkpoint.tmp-*``; then the old directory is renamed away (``.checkpoint.old-*``), the new
one renamed into place, and the old one deleted. A POSIX rename cannot replace a non-empty
directory in one step, so a crash between the two renames leaves no ``checkpoint/`` but a
complete sibling: :func:`locate` finds it (highest step wins) and :func:`recover` renames it
into place. A reader never sees a half-written checkpoint, and the old one is never half
replaced. Temporaries left by a crash during writing (no ``state.json``) are deleted by the next
save.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends import BackendError
from .errors import TrainingError

STATE = "state.json"
FORMAT = 1


def save(target: Path, write: Callable[[Path], None], state: dict[str, Any]) -> None:
    """Write a checkpoint with ``write(folder)`` (everything but the state), then ``state``, and
    put it in place of ``target``."""
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give it a normal folder's mode
        write(tmp)
        (tmp / STATE).write_text(json.dumps({"format": FORMAT, **state}, indent=2), encoding="utf-8")
        for file in tmp.iterdir():
            _fsync(file)
        _fsync(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.rename(target, old / "previous")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_state(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE).read_text(encoding="utf-8"))


def locate(target: Path) -> Path | None:
    """The complete checkpoint for ``target``: itself or, after a crash between the two renames
    of :func:`save`, the sibling with the highest step; None when there is none."""
    target = Path(target)
    if (target / STATE).is_file():
        return target
    candidates = [p for p in _siblings(target) if (p / STATE).is_file()]
    candidates += [p / "previous" for p in _siblings(target, "old") if (p / "previous" / STATE).is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: int(read_state(p).get("step", -1)))


def recover(target: Path) -> Path | None:
    """Put the checkpoint :func:`locate` finds at ``target`` (when it is a sibling); return it."""
    found = locate(target)
    if found is None or found == Path(target):
        return found
    if Path(target).exists():
        shutil.rmtree(target)
    os.rename(found, target)
    _remove_leftovers(target)
    return Path(target)


def for_evaluation(path: Path, arch_hash: str) -> tuple[Path, dict[str, Any]]:
    """The complete checkpoint at ``path`` and its state, checked to be of architecture
    ``arch_hash``; :class:`BackendError` otherwise."""
    folder = locate(path)
    if folder is None:
        raise BackendError(f"{path}: no complete checkpoint there")
    state = read_state(folder)
    if state.get("hash") != arch_hash:
        raise BackendError(f"{folder}: the checkpoint is of architecture {state.get('hash')}, not {arch_hash}")
    return folder, state


def check_resumable(folder: Path, arch_hash: str, steps_per_epoch: int) -> dict[str, Any]:
    """The state of a checkpoint a run resumes from, after checking that it is of the same
    architecture and batch layout (the step counter means nothing otherwise)."""
    state = read_state(folder)
    if state.get("hash") != arch_hash:
        raise TrainingError(f"{folder}: the checkpoint is of another architecture ({state.get('hash')})")
    if state.get("steps_per_epoch") != steps_per_epoch:
        raise TrainingError(
            f"{folder}: the checkpoint has {state.get('steps_per_epoch')} steps per epoch, this run "
            f"{steps_per_epoch} (the data or the batch size changed); resume needs the same ones"
        )
    return state


def _siblings(target: Path, kind: str = "tmp") -> list[Path]:
    return [p for p in target.parent.glob(f".{target.name}.{kind}-*") if p.is_dir()]


def _remove_leftovers(target: Path) -> None:
    if not (target / STATE).is_file():
        return  # a crash between the renames: the siblings hold the checkpoint; recover() first
    for path in _siblings(target) + _siblings(target, "old"):
        shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
