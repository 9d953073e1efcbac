"""The trainer's checkpoint directory and its atomic replacement.

Layout of ``RUN_DIR/checkpoint/``::

    model.weights.h5   every model weight (Keras ``save_weights``; float32 even in mixed precision)
    optimizer.npz      the optimizer's variables (iterations, learning rate, momentum / Adam
                       slots, loss scale), keyed by position, with their paths to check on load
    random.npz         the dropout / drop-path seed-generator states
    state.json         step, completed epochs, the running epoch's metric sums, the preprocessor,
                       the architecture hash; written last, so its presence marks a complete
                       checkpoint

Replacement: the new checkpoint is written and fsynced in a temporary sibling
``.checkpoint.tmp-*``; then the old directory is renamed away (``.checkpoint.old-*``), the new
one renamed into place, and the old one deleted. A POSIX rename cannot replace a non-empty
directory in one step, so a crash between the two renames leaves no ``checkpoint/`` but a
complete sibling; :func:`locate` finds it (highest step wins) and :func:`recover` renames it
into place, so a reader never sees a half-written checkpoint. Leftover temporaries of a crash
during writing (no ``state.json``) are deleted by the next save.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE = "state.json"
WEIGHTS = "model.weights.h5"
OPTIMIZER = "optimizer.npz"
RANDOM = "random.npz"
FORMAT = 1


def save(target: Path, write: Callable[[Path], None], state: dict[str, Any]) -> None:
    """Write a checkpoint with ``write(folder)`` (everything but the state), then ``state``,
    and put it in place of ``target``."""
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
    """The complete checkpoint for ``target``: itself, or after a crash between the two renames
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
    """Put the checkpoint :func:`locate` finds at ``target`` (when it is a sibling) and return it."""
    found = locate(target)
    if found is None or found == Path(target):
        return found
    if Path(target).exists():
        shutil.rmtree(target)
    os.rename(found, target)
    _remove_leftovers(target)
    return Path(target)


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
