"""The integrity rules every imported file is read under (docs/threat-model.md, "Imported weights").

* No code runs: PyTorch files through ``torch.load(weights_only=True)`` only, HDF5 and
  safetensors files hold data only, and a ``.keras`` archive is never handed to ``load_model``.
* Sizes are checked before anything is inflated or allocated: a zip's declared member sizes, a
  safetensors header's length and declared tensors, an HDF5 dataset's declared shape. The limit
  follows the spec being imported into (:func:`limits_for`): a file cannot legitimately hold
  much more than the network it fills.
* Every tensor is finite floating point (float16, bfloat16, float32, float64) of at most four
  dimensions; the only other tensors accepted are PyTorch's integer ``num_batches_tracked``
  counters, which are bookkeeping and are dropped.
* Every problem is a :class:`WeightsImportError`: one line, what was found and what was expected.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backends import BackendError

if TYPE_CHECKING:
    from ..pipeline import Architecture

MiB = 2**20
FLOAT_NAMES = "float16, bfloat16, float32 or float64"
BOOKKEEPING = "num_batches_tracked"


class WeightsImportError(BackendError):
    """Weights cannot be imported: the file is refused, or it does not fit the spec. ``reason``
    is the message without the source's description in front."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int  # the file, and the tensors it declares, together
    max_tensors: int = 100_000
    max_header_bytes: int = 16 * MiB  # a safetensors header, a zip's pickle, a .keras archive's JSON


def limits_for(arch: Architecture) -> ReadLimits:
    """Twice the network in float64, plus 512 MiB for a classifier the spec replaces (a
    21,843-class ImageNet-21k head over 2,048 features is 179 MB in float32)."""
    values = arch.params_trainable + arch.params_non_trainable
    return ReadLimits(max_bytes=16 * values + 512 * MiB)


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_file(path: Path, limits: ReadLimits) -> int:
    """The file's size, refused when missing, not a regular file or over the limit."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise WeightsImportError(f"{path}: no such file") from None
    except OSError as exc:
        raise WeightsImportError(f"{path}: cannot be read ({one_line(exc)})") from None
    if not path.is_file():
        raise WeightsImportError(f"{path}: not a regular file")
    if stat.st_size > limits.max_bytes:
        raise WeightsImportError(
            f"{path}: {_size(stat.st_size)} is more than this spec's import limit of {_size(limits.max_bytes)}"
        )
    return stat.st_size


def check_declared(path: Path | str, declared: int, count: int, limits: ReadLimits) -> None:
    if count > limits.max_tensors:
        raise WeightsImportError(f"{path}: declares {count:,} tensors (limit {limits.max_tensors:,})")
    if declared > limits.max_bytes:
        raise WeightsImportError(
            f"{path}: declares {_size(declared)} of tensors, more than this spec's import limit of {_size(limits.max_bytes)}"
        )


def check_zip(path: Path, limits: ReadLimits, what: str) -> list[zipfile.ZipInfo]:
    """The archive's members, after checking their declared (inflated) sizes."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise WeightsImportError(f"{path}: a damaged {what} (not a readable zip archive: {one_line(exc)})") from None
    declared = sum(m.file_size for m in members)
    check_declared(path, declared, len(members), limits)
    return members


def bookkeeping(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == BOOKKEEPING


def checked_array(name: str, value: np.ndarray) -> np.ndarray:
    """``value`` when it is a finite floating-point tensor of at most four dimensions."""
    if value.dtype.kind != "f" or value.dtype.itemsize not in (2, 4, 8):
        raise WeightsImportError(f"{name}: dtype {value.dtype}; weights must be {FLOAT_NAMES}")
    if value.ndim > 4:
        raise WeightsImportError(f"{name}: {value.ndim} dimensions {tuple(value.shape)}; weights have at most 4")
    finite = np.isfinite(value)
    if not finite.all():
        bad = int(value.size - np.count_nonzero(finite))
        raise WeightsImportError(
            f"{name}: {bad:,} of {value.size:,} values are NaN or infinite; refusing to import them"
        )
    return value


def check_shape(name: str, shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes a declared tensor takes (checked before reading it)."""
    if len(shape) > 4 or any(n < 0 for n in shape):
        raise WeightsImportError(f"{name}: declared shape {shape}; weights have at most 4 non-negative dimensions")
    return math.prod(shape) * itemsize


def _size(n: int) -> str:
    return f"{n / MiB:,.1f} MiB" if n >= MiB else f"{n:,} bytes"


def as_path(source: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(source))
