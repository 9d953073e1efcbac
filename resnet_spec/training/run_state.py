"""Which folders ``train --out`` may write, and the lock that keeps a second train out.

A run is created only in a new or empty folder, or in a folder that holds a resnet-spec run that
never reached its first checkpoint (a failed start: its own files are removed and it starts
afresh); ``--resume`` needs a resnet-spec run with an intact checkpoint, trained with the same
backend, architecture and recipe (``allow_recipe_change`` accepts another recipe and records the
change in ``run.json``). Nothing else is touched: a folder holding anything else is refused
before any work, and no file that is not the run's own is ever removed.

The lock: ``run.lock`` in the run directory, held with ``fcntl.flock`` (exclusive, released by
the kernel when the process ends, however it ends) and holding the holder's pid. A second train
into the folder fails at once, naming that pid. The file is removed when the run ends; one left
by a killed run is ignored (nobody holds its lock). A process forked while the lock is held (a
DataLoader worker) closes its copy of the descriptor at once: a flock is shared by every copy,
and a worker orphaned by a SIGKILL would otherwise hold the folder after its parent died."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from . import checkpoint
from .errors import TrainingError

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
RESULT_FILE = "result.json"
# The run directory's own files, removed when a failed start is started afresh.
OWN_FILES = ("spec.yaml", "metrics.csv", "metrics.jsonl", "curves.png", RESULT_FILE, RUN_FILE)
OWN_PATTERNS = ("events.out.tfevents.*", ".checkpoint.tmp-*", ".checkpoint.old-*", ".*.tmp*")
# Recipe keys that change how a run is carried out, not what it computes: free to change on resume.
FREE_KEYS = ("execution", "checkpoint_every", "checkpoint_every_epoch", "tensorboard", "on_divergence")
LOCK_RETRY_SECONDS = 1.0  # a concurrent check holds a shared lock for an instant
_HELD: set[int] = set()  # descriptors of the locks this process holds (closed in forked children)


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


@dataclass
class Inspection:
    """What ``train`` will do in the folder: ``"create"`` (new or empty), ``"restart"`` (a failed
    start, started afresh) or ``"resume"``; ``changes`` lists a recipe's changes allowed on resume."""

    action: str
    meta: dict[str, Any]
    changes: list[str]


def inspect(path: Path, *, arch_hash: str, backend: str, recipe: dict[str, Any], resume: bool,
            allow_recipe_change: bool = False, locked: bool = False) -> Inspection:  # fmt: skip
    """Check, without writing anything, that a run may be created in (or resumed from) ``path``;
    :class:`TrainingError` (one line: what, where, what to do) otherwise. ``locked``: this
    process holds the folder's lock."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise TrainingError(f"{path} is a broken symbolic link (to {os.readlink(path)}); choose another --out")
    if path.exists() and not path.is_dir():
        raise TrainingError(f"{path} is a file, not a folder; --out names the run directory to create: choose a new "
                            "folder name")  # fmt: skip
    _check_parents(path)
    if path.is_dir() and not locked:
        _check_unlocked(path)
    meta = read_meta(path)
    if resume:
        return _inspect_resume(path, meta, arch_hash, backend, recipe, allow_recipe_change)
    if meta is None:
        foreign = _foreign_entries(path)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise TrainingError(f"{path} is not empty and is not a resnet-spec run (it holds {shown}); a run is created "
                                "only in a new or empty folder: choose another --out")  # fmt: skip
        return Inspection("create", {}, [])
    if _has_checkpoint(path) or (path / RESULT_FILE).exists():
        raise TrainingError(f"{path} already holds a run; use --resume to continue it or choose another --out")
    return Inspection("restart", meta, [])


def recipe_of(training: Any) -> dict[str, Any]:
    """The parts of a recipe that a resumed run must keep (unless told otherwise)."""
    data = training.model_dump(mode="json")
    return {key: value for key, value in data.items() if key not in FREE_KEYS}


class RunLock:
    """The exclusive lock on a run directory, held until :meth:`release` (or the process ends)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise TrainingError(f"{self.path.parent}: cannot write the run directory ({exc.strerror or exc}); "
                                    "choose another --out") from None  # fmt: skip
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise TrainingError(_in_use(self.path.parent)) from None
            if _same_file(fd, self.path):  # not removed by the holder that just released it
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _HELD.add(fd)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # before the unlock: whoever waits then finds no file or a new one
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None


def open_run(path: Path, *, arch_hash: str, backend: str, recipe: dict[str, Any],
             resume: bool, allow_recipe_change: bool, meta: dict[str, Any]) -> RunLock:  # fmt: skip
    """Create (or reopen) the run directory and lock it; check it again under the lock (another
    train may have started since :func:`inspect`); remove a failed start's files; write
    ``run.json`` (``meta`` for a new run; the recipe change for a resumed one)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"{path}: cannot create the run directory ({exc.strerror or exc}); choose another --out") from None
    lock = RunLock(path).acquire()
    try:
        again = inspect(path, arch_hash=arch_hash, backend=backend, recipe=recipe, resume=resume,
                        allow_recipe_change=allow_recipe_change, locked=True)  # fmt: skip
        if again.action == "restart":
            _remove_own_files(path)
        if again.action in ("create", "restart"):
            write_meta(path, {**meta, "status": "started", "recipe": recipe})
        elif again.changes:
            changes = [*again.meta.get("recipe_changes", []), {"changed": again.changes, "before": again.meta.get("recipe")}]
            write_meta(path, {**again.meta, "recipe": recipe, "recipe_changes": changes, "status": "resumed"})
        else:
            write_meta(path, {**again.meta, "status": "resumed"})
    except BaseException:
        lock.release()
        raise
    return lock


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    with atomic_path(Path(path) / RUN_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def update_status(path: Path, status: str) -> None:
    meta = read_meta(Path(path))
    if meta is not None:
        write_meta(path, {**meta, "status": status})


def _inspect_resume(path: Path, meta: dict[str, Any] | None, arch_hash: str, backend: str, recipe: dict[str, Any],
                    allow_recipe_change: bool) -> Inspection:  # fmt: skip
    if meta is None:
        raise TrainingError(f"{path}: nothing to resume (not a resnet-spec run: no {RUN_FILE}); start a run there "
                            "without --resume, or give the --out of an earlier run")  # fmt: skip
    if meta.get("hash") != arch_hash or meta.get("backend") != backend:
        raise TrainingError(
            f"{path} was trained with backend {meta.get('backend')} and architecture {str(meta.get('hash'))[:19]}; "
            f"resume needs the same spec and backend"
        )
    choice = checkpoint.choose(path / "checkpoint")
    if choice.folder is None and not _has_checkpoint(path):
        raise TrainingError(f"{path}: nothing to resume: the run stopped before its first checkpoint; start it afresh "
                            "with the same command without --resume (the folder is reused)")  # fmt: skip
    if choice.folder is None:
        raise TrainingError(f"{path}: no intact checkpoint to resume from ({choice.describe_rejected()}); start "
                            "afresh with another --out")  # fmt: skip
    changes = _recipe_changes(meta.get("recipe"), recipe)
    if changes and not allow_recipe_change:
        raise TrainingError(f"{path}: the recipe changed since the run started ({'; '.join(changes[:3])}); resume "
                            "with the run's recipe (its spec.yaml), or pass --allow-recipe-change to continue with "
                            "the new one (recorded in run.json)")  # fmt: skip
    return Inspection("resume", meta, changes)


def _recipe_changes(before: Any, now: dict[str, Any]) -> list[str]:
    """``key: before -> now`` for every leaf that differs (nothing when the run recorded none)."""
    if not isinstance(before, dict):
        return []
    found: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{where}.{key}")
        elif a != b:
            found.append(f"{where}: {json.dumps(a)} in the run, {json.dumps(b)} now")

    walk(before, now, "training")
    return found


def read_meta(path: Path) -> dict[str, Any] | None:
    file = path / RUN_FILE
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainingError(f"{file} is unreadable ({type(exc).__name__}); move the folder away or choose another "
                            "--out") from None  # fmt: skip
    if not isinstance(meta, dict):
        raise TrainingError(f"{file} holds no run description (a JSON object); move the folder away or choose another --out")
    return meta


def _check_parents(path: Path) -> None:
    """A folder cannot be made inside a file: say so before any work."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise TrainingError(f"{path}: {parent} is a file, so the run directory cannot be made there; choose "
                                    "another --out")  # fmt: skip
            return


def _check_unlocked(path: Path) -> None:
    """Refuse at once a folder another train holds (a shared lock, taken and dropped)."""
    lock = path / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise TrainingError(_in_use(path)) from None
    finally:
        os.close(fd)


def _in_use(path: Path) -> str:
    try:
        pid = (path / LOCK_FILE).read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        pid = "unknown"
    return (f"{path} is in use by another train (pid {pid}); wait for it to finish, or stop it, or choose "
            "another --out")  # fmt: skip


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _has_checkpoint(path: Path) -> bool:
    """Whether anything that is or may be a checkpoint is there (intact or not; incomplete
    temporaries of a write do not count)."""
    target = path / "checkpoint"
    if checkpoint.exists_any(target):
        return True
    return any((p / checkpoint.STATE).is_file() for p in path.glob(".checkpoint.tmp-*"))


def _foreign_entries(path: Path) -> list[str]:
    """What a folder without ``run.json`` holds besides what a run's first moments leave (its
    lock file, the temporary of ``run.json``)."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE and not p.name.startswith(f".{RUN_FILE}."))


def _remove_own_files(path: Path) -> None:
    for name in OWN_FILES:
        (path / name).unlink(missing_ok=True)
    for pattern in OWN_PATTERNS:
        for item in path.glob(pattern):
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
