"""Integrity of saved model files, shared by both backends (docs/threat-model.md, "Saved models").

A model file written by this version carries an ``integrity`` record::

    {"algorithm": "sha256",
     "parts": {"spec": "sha256:...", "header": "sha256:...", "config.json": "sha256:...", ...},
     "tensors": {"<tensor name>": "sha256:...", ...}}

``parts`` covers the whole model description (the stored spec, the file's header fields and, in
a ``.keras`` archive, Keras' own ``config.json`` and ``metadata.json``); ``tensors`` covers every
tensor, its dtype and shape included. Loading recomputes both and names what differs. A digest
detects damage and edits made without recomputing it; it is not a signature (anyone who edits
a file can recompute the digests), which is why the loaders also build the network from the
verified spec and check every tensor (:func:`check_tensor`) whatever the record says.

Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from .backends import BackendError
from .importing.safety import MiB, ReadLimits, WeightsImportError, check_file, checked_array, one_line

if TYPE_CHECKING:
    from .pipeline import Architecture

ALGORITHM = "sha256"
#: what a file without an integrity record (written before digests existed) is told
RESAVE_HINT = "re-save it to add them: resnet-spec convert OLD --to BACKEND -o NEW"
#: room for what a model file holds besides its tensors (headers, Keras' config, HDF5 overhead)
OVERHEAD_BYTES = 64 * MiB
#: declared sizes above this are refused before the spec is known (a file's JSON members)
MAX_DESCRIPTION_BYTES = 16 * MiB
_HASH_LENGTH = len("sha256:") + 64
_VARIANCE_NAMES = ("running_var", "moving_variance")


class ModelFileError(BackendError):
    """A saved model is refused: one line naming the file and what is wrong with it."""


# -- digests ------------------------------------------------------------------------------------


def digest_bytes(*chunks: bytes | memoryview) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return f"{ALGORITHM}:{h.hexdigest()}"


def digest_data(value: Any) -> str:
    """Digest of JSON data in canonical form (sorted keys, no whitespace, no NaN)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return digest_bytes(text.encode())


def digest_array(dtype: str, shape: Iterable[int], data: bytes | memoryview) -> str:
    """Digest of one tensor: its dtype and shape, then its bytes in C order."""
    return digest_bytes(f"{dtype}{tuple(int(n) for n in shape)}\0".encode(), data)


def digest_numpy(array: np.ndarray) -> str:
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)  # no copy for a contiguous array
    return digest_array(str(array.dtype), array.shape, flat.data)


def record(parts: Mapping[str, str], tensors: Mapping[str, str]) -> dict[str, Any]:
    return {"algorithm": ALGORITHM, "parts": dict(parts), "tensors": dict(tensors)}


def verify(where: str, stored: Any, parts: Mapping[str, str], tensors: Mapping[str, str], *,
           required: bool = True) -> dict[str, Any]:  # fmt: skip
    """Compare a file's integrity record with digests computed from what it holds; refuse the
    file naming the first parts and tensors that differ. Returns the status for the metadata.
    ``required``: the file's format has digests, so a missing record was removed, not never written."""
    if stored is None and required:
        raise ModelFileError(f"{where}: its format has integrity digests but the record is missing (removed or damaged); refusing it")
    if stored is None:
        return {"status": "absent", "message": f"{where}: written without integrity digests; {RESAVE_HINT}"}
    if not isinstance(stored, Mapping) or stored.get("algorithm") != ALGORITHM:
        raise ModelFileError(f"{where}: its integrity record is damaged (expected a mapping with algorithm '{ALGORITHM}')")
    stored_parts, stored_tensors = stored.get("parts"), stored.get("tensors")
    if not _digest_map(stored_parts) or not _digest_map(stored_tensors):
        raise ModelFileError(f"{where}: its integrity record is damaged (parts and tensors must map names to digests)")
    differ = _differences("part", stored_parts, parts) + _differences("tensor", stored_tensors, tensors)
    if differ:
        shown = "; ".join(differ[:3]) + (f"; and {len(differ) - 3} more" if len(differ) > 3 else "")
        raise ModelFileError(
            f"{where}: does not match the digests saved with it ({shown}): the file was damaged or edited "
            "after saving; refusing it"
        )
    return {"status": "verified", "parts": len(parts), "tensors": len(tensors)}


def _digest_map(value: Any) -> TypeGuard[Mapping[str, str]]:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _differences(kind: str, stored: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    out = [f"{kind} {name!r} differs" for name in found if name in stored and stored[name] != found[name]]
    out += [f"{kind} {name!r} has no digest" for name in found if name not in stored]
    out += [f"{kind} {name!r} is missing" for name in stored if name not in found]
    return out


# -- what a file must hold ------------------------------------------------------------------------


def stored_spec(value: Any, where: str) -> dict[str, Any]:
    """The stored spec, which must be a mapping: a string is never read as a path or as YAML."""
    if not isinstance(value, dict):
        raise ModelFileError(
            f"{where}: the stored spec is {_kind(value)}, expected a mapping (a spec as data; a model file "
            "never refers to another file); the file is damaged or was not written by resnet-spec"
        )
    return value


def stored_hash(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("sha256:") or len(value) != _HASH_LENGTH:
        raise ModelFileError(f"{where}: the stored architecture hash is {_kind(value)}, expected 'sha256:' and 64 hex digits")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"of type {type(value).__name__}"


def check_tensor(name: str, array: np.ndarray) -> np.ndarray:
    """A weight as a loader may accept it: finite float16 / bfloat16 / float32 / float64 of at
    most four dimensions, and a running variance never negative."""
    checked_array(name, array)
    if name.rsplit(".", 1)[-1].rsplit("/", 1)[-1] in _VARIANCE_NAMES and array.size and float(array.min()) < 0:
        bad = int(np.count_nonzero(array < 0))
        raise WeightsImportError(f"{name}: {bad:,} of {array.size:,} running variances are negative; refusing them")
    return array


def check_shapes(where: str, expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> None:
    """Tensor names and shapes against those the spec's graph gives, before any is assigned."""
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    wrong = [name for name in expected if name in found and tuple(found[name]) != tuple(expected[name])]
    if wrong:
        name = wrong[0]
        raise ModelFileError(
            f"{where}: tensor {name!r} has shape {tuple(found[name])}, the spec's graph expects "
            f"{tuple(expected[name])}" + (f" ({len(wrong) - 1} more differ)" if len(wrong) > 1 else "")
        )
    if missing or extra:
        parts = ([f"missing {', '.join(repr(n) for n in missing[:3])}"] if missing else []) + (
            [f"not in the spec's graph: {', '.join(repr(n) for n in extra[:3])}"] if extra else []
        )
        raise ModelFileError(f"{where}: its tensors do not fit the spec's graph ({'; '.join(parts)})")


# -- sizes before anything is read --------------------------------------------------------------


def model_file_limit(arch: Architecture) -> int:
    """Bytes a model file of this architecture may declare: every value as float64, plus room
    for headers. Unlike imports, a model file holds exactly its own network (no classifier to
    replace), so a member declaring more than this is a zip bomb or a damaged file."""
    return 8 * (arch.params_trainable + arch.params_non_trainable) + OVERHEAD_BYTES


def regular_file(path: Path, what: str) -> int:
    """The file's size; a missing path, a directory, a FIFO or a device is refused unopened."""
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a {what} file")
    try:
        return check_file(path, ReadLimits(max_bytes=2**62))
    except WeightsImportError as exc:
        raise ModelFileError(str(exc)) from None


def zip_members(path: Path, what: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name, read from its central directory (nothing inflated)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: not a {what} file (not a readable zip archive: {one_line(exc)})") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({one_line(exc)})") from None
    return {m.filename: m for m in members}


def check_inflated(path: Path, members: Iterable[zipfile.ZipInfo], limit: int, why: str) -> None:
    """Refuse an archive whose members declare more than ``limit`` bytes once inflated, before
    any member is inflated (``why`` says where the limit comes from)."""
    members = list(members)
    total = sum(m.file_size for m in members)
    if total > limit:
        largest = max(members, key=lambda m: m.file_size)
        raise ModelFileError(
            f"{path}: its zip members declare {_size(total)} once inflated ({largest.filename!r}: "
            f"{_size(largest.file_size)} from {_size(largest.compress_size)}), more than the {_size(limit)} "
            f"{why}; a zip bomb or a damaged file, refused before inflating"
        )


def read_member(path: Path, members: Mapping[str, zipfile.ZipInfo], name: str, limit: int) -> bytes:
    """One member's bytes, its declared size checked against ``limit`` first."""
    info = members.get(name)
    if info is None:
        raise ModelFileError(f"{path}: the archive has no {name}")
    if info.file_size > limit:
        raise ModelFileError(f"{path}: {name} is larger than {limit:,} bytes ({info.file_size:,} declared)")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(info) as handle:
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # damaged data, bad CRC, bad deflate stream
        raise ModelFileError(f"{path}: {name} cannot be read ({one_line(exc)})") from None
    if len(data) > limit:
        raise ModelFileError(f"{path}: {name} inflates past {limit:,} bytes (its header says {info.file_size:,})")
    return data


def _size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:,.1f} GiB"
    return f"{n / MiB:,.1f} MiB" if n >= MiB else f"{n:,} bytes"
