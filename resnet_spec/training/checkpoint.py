"""The run directory's checkpoints: the latest two, each with a digest, replaced atomically, for
every backend.

    checkpoint/            the latest checkpoint
    checkpoint.previous/   the one before it (what a damaged latest one falls back to)
    checkpoint-best/       the checkpoint of the epoch with the best validation accuracy (runs
                           with validation data only; :func:`keep_copy` of the latest one, same
                           files, same digests), with its own ``checkpoint-best.previous/``

A backend writes its files (weights, optimizer, random states: its own formats) into a fresh
folder; ``state.json`` (step, epochs, the preprocessor, the architecture hash, the sha256 of every
file the backend wrote and a digest of the state itself) is written last, so its presence marks a
complete checkpoint, and its digests tell an intact one from a damaged one (flipped bytes, a
truncated file, an edited state).

Replacement: the new checkpoint is written and fsynced in a temporary sibling
``.checkpoint.tmp-*``; then the previous one is renamed away (``.checkpoint.old-*``, deleted
afterwards), the latest renamed to ``checkpoint.previous`` and the new one renamed into place. A
crash between the renames leaves no ``checkpoint/`` but complete siblings: :func:`choose` finds
the intact one with the highest step and :func:`recover` renames it into place. A reader never
sees a half-written checkpoint. Temporaries left by a crash during writing (no ``state.json``)
are deleted by the next save.

Reading API (kept stable for other commands): :func:`for_evaluation` (the intact checkpoint of a
run and its state), :func:`locate`, :func:`read_state`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import BackendError
from .errors import TrainingError

STATE = "state.json"
FORMAT = 2  # 2: file digests and a state digest; 1 (no digests) is still read
PREVIOUS_SUFFIX = ".previous"
CORRUPT_SUFFIX = ".corrupt"
# Tests only: pause (seconds, at most PAUSE_SECONDS) inside the write of the checkpoint of this step,
# after the backend's files and before state.json, so that a test can kill the run mid-write.
PAUSE_VARIABLE = "RESNET_SPEC_TEST_PAUSE_IN_CHECKPOINT"
PAUSE_SECONDS = 120
Report = Callable[[str], None]


def previous_of(target: Path) -> Path:
    return Path(target).with_name(Path(target).name + PREVIOUS_SUFFIX)


def save(target: Path, write: Callable[[Path], None], state: dict[str, Any], *, pause: bool = True) -> None:
    """Write a checkpoint with ``write(folder)`` (everything but the state), then ``state`` with
    the digests, and put it in place of ``target`` (whose checkpoint becomes the previous one)."""
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give it a normal folder's mode
        write(tmp)
        if pause:
            _pause_for_tests(state)
        files = {name: _sha256(tmp / name) for name in _files(tmp)}
        body = {"format": FORMAT, **state, "files": files}
        (tmp / STATE).write_text(json.dumps({**body, "digest": _state_digest(body)}, indent=2), encoding="utf-8")
        for name in [*files, STATE]:
            _fsync(tmp / name)
        _fsync(tmp)
        _rotate(target, tmp)
        _fsync(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _rotate(target: Path, new: Path) -> None:
    previous = previous_of(target)
    if target.exists():
        if previous.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(previous, old / "previous")
            shutil.rmtree(old, ignore_errors=True)
        os.rename(target, previous)
    os.rename(new, target)


def keep_copy(source: Path, target: Path) -> None:
    """Put a copy of the checkpoint in ``source`` at ``target``, as :func:`save` puts a new one
    (``target``'s becomes its previous one): the same files, so the same digests. Hard links where
    the file system allows (no second copy of the weights: a checkpoint's files are never written
    again once in place, only renamed and deleted), copies otherwise."""
    source = Path(source)

    def write(folder: Path) -> None:
        for name in _files(source):
            destination = folder / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source / name, destination)
            except OSError:
                shutil.copy2(source / name, destination)

    state = {k: v for k, v in read_state(source).items() if k not in ("format", "files", "digest")}
    save(target, write, state, pause=False)
    reason = problem(target)
    if reason is not None:  # the copy itself is checked against the digests it carries
        raise TrainingError(f"{target}: the copy of {source} is not intact ({reason})")


def drop_after(target: Path, step: int) -> None:
    """Remove ``target``'s checkpoints (it and its previous one) of steps after ``step``: on
    resume from ``step``, the best checkpoint of an epoch the run trains again (a resume from the
    previous checkpoint, the latest one being damaged) no longer describes the run."""
    for path in (Path(target), previous_of(target)):
        later = path.is_dir() and (_step_or_none(path) or -1) > step
        if later:
            old = Path(tempfile.mkdtemp(prefix=f".{Path(target).name}.old-", dir=path.parent))
            os.rename(path, old / "dropped")
            shutil.rmtree(old, ignore_errors=True)


def read_state(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / STATE).read_text(encoding="utf-8"))


def problem(folder: Path) -> str | None:
    """Why the checkpoint in ``folder`` is not intact (one phrase), or None when it is."""
    folder = Path(folder)
    if not (folder / STATE).is_file():
        return f"no {STATE} (an incomplete write)"
    try:
        state = read_state(folder)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{STATE} is unreadable ({type(exc).__name__})"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return f"{STATE} holds no step number"
    version = state.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        return f"{STATE} is of an unknown format ({version!r})"
    if version < 2:
        return None  # written before digests: nothing to verify against
    if not isinstance(state.get("files"), dict) or state.get("digest") != _state_digest(state):
        return f"{STATE} does not match its digest (edited or damaged)"
    for name, digest in sorted(state["files"].items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} differs from its recorded sha256 (damaged)"
    return None


@dataclass
class Choice:
    """The checkpoint to use for ``target`` (None: none intact) and why newer ones were passed over."""

    folder: Path | None
    state: dict[str, Any] | None = None
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def describe_rejected(self) -> str:
        return "; ".join(f"{path}: {reason}" for path, reason in self.rejected)


def choose(target: Path) -> Choice:
    """The intact checkpoint with the highest step among ``target``, its previous one and the
    complete siblings a crash between the renames of :func:`save` leaves."""
    target = Path(target)
    candidates = [target, previous_of(target)]
    candidates += [p for p in _siblings(target) if (p / STATE).is_file()]
    candidates += [p / "previous" for p in _siblings(target, "old") if (p / "previous" / STATE).is_file()]
    found: list[tuple[int, Path, dict[str, Any]]] = []
    rejected: list[tuple[Path, str]] = []
    for path in candidates:
        if not path.is_dir():
            continue
        reason = problem(path)
        if reason is None:
            state = read_state(path)
            found.append((int(state["step"]), path, state))
        elif path in (target, previous_of(target)):
            rejected.append((path, reason))
    if not found:
        return Choice(None, None, rejected)
    _, best, state = max(found, key=lambda item: item[0])
    # Reported only when a newer one was passed over: a damaged previous one behind an intact latest one is not.
    return Choice(best, state, [] if best == target else rejected)


def locate(target: Path) -> Path | None:
    """The intact checkpoint for ``target`` (see :func:`choose`); None when there is none."""
    return choose(target).folder


def recover(target: Path, report: Report | None = None) -> Path | None:
    """Put the checkpoint :func:`choose` finds at ``target`` and return it (None: none intact).
    A damaged latest checkpoint is set aside as ``checkpoint.corrupt`` (so that the next save
    cannot push the intact one out) and ``report`` is told, in one line."""
    target = Path(target)
    choice = choose(target)
    if choice.folder is None:
        return None
    if choice.rejected and report is not None:
        report(f"{choice.describe_rejected()}; resuming from {choice.folder} (step {_step_or_none(choice.folder)}) "
               f"instead; the damaged one is kept as {target.name}{CORRUPT_SUFFIX}")  # fmt: skip
    if choice.folder == target:
        return target
    if target.exists():
        corrupt = target.with_name(target.name + CORRUPT_SUFFIX)
        if corrupt.exists():
            shutil.rmtree(corrupt)
        os.rename(target, corrupt)
    os.rename(choice.folder, target)
    _remove_leftovers(target)
    return target


def for_evaluation(path: Path, arch_hash: str, report: Report | None = None) -> tuple[Path, dict[str, Any]]:
    """The intact checkpoint at ``path`` (or, when it is damaged, the previous one: ``report``,
    standard error by default, is told) and its state, checked to be of architecture
    ``arch_hash``; :class:`BackendError` otherwise. Nothing is moved."""
    choice = choose(Path(path))
    if choice.folder is None or choice.state is None:
        why = f" ({choice.describe_rejected()})" if choice.rejected else ""
        raise BackendError(f"{path}: no intact checkpoint there{why}")
    if choice.rejected:
        (report or _to_stderr)(f"{choice.describe_rejected()}; using {choice.folder} (step {choice.state['step']})")
    if choice.state.get("hash") != arch_hash:
        raise BackendError(f"{choice.folder}: the checkpoint is of architecture {choice.state.get('hash')}, not {arch_hash}")
    return choice.folder, choice.state


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


def exists_any(target: Path) -> bool:
    """Whether anything that may be a checkpoint of ``target`` is there, intact or not."""
    target = Path(target)
    return target.exists() or previous_of(target).exists()


def _to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _step_or_none(folder: Path) -> int | None:
    try:
        step = read_state(folder).get("step")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def _pause_for_tests(state: dict[str, Any]) -> None:
    wanted = os.environ.get(PAUSE_VARIABLE)
    if wanted and wanted.strip() == str(state.get("step")):
        time.sleep(PAUSE_SECONDS)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != STATE)


def _state_digest(state: dict[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
