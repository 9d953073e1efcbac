"""Readers of the data-set formats, each returning splits whose pixels stay on disk.

* CIFAR "python version" batches: pickles, read with a restricted unpickler that accepts only
  what CIFAR's batches hold (NumPy arrays, lists, strings, numbers: no other global, so a pickle
  cannot run code); the pixel block is then memory-mapped where it lies in the file (its bytes are
  stored raw by Python 2's pickles, as CIFAR's are, and by protocols 3-5) and checked against the
  unpickled copy. Pickles that store bytes otherwise (Python 3's protocol 2) stay in memory: at
  most CIFAR's 150 MB.
* ``.npz``: members stored uncompressed (``np.savez``) are memory-mapped inside the zip; compressed
  ones (``np.savez_compressed``) are inflated, a block at a time, into a temporary file that is then
  memory-mapped (and deleted when the split is).
* HDF5: datasets read by index (:class:`.sources.HDF5Split`).
* Image folders: the file names, sorted, one class a folder; nothing is decoded here.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import shutil
import struct
import tempfile
import weakref
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .labels import class_numbers
from .sources import ArraySplit, HDF5Split, ImageFiles, Split

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# What NumPy arrays and scalars (labels written with NumPy) are pickled with: constructors of
# arrays from bytes, nothing that calls code of the pickle's choosing.
CIFAR_GLOBALS = {
    (core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")
} | {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"),
     ("numpy", "dtype"), ("_codecs", "encode")}  # fmt: skip
UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
                     KeyError, struct.error, OverflowError, MemoryError, RecursionError)  # fmt: skip
RAW_BYTES = {"BINSTRING": 4, "SHORT_BINSTRING": 1, "BINBYTES": 4, "SHORT_BINBYTES": 1, "BINBYTES8": 8, "BYTEARRAY8": 8}


# ---------------------------------------------------------------------------- CIFAR


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CIFAR_GLOBALS:
            raise DataError(f"refers to {module}.{name}, which a CIFAR batch never holds (refused: a pickle can run code)")
        return super().find_class(module, name)


def read_cifar_pickle(file: Path) -> dict[bytes, Any]:
    try:
        with open(file, "rb") as handle:
            loaded = _CifarUnpickler(handle, encoding="bytes").load()
    except DataError as exc:
        raise DataError(f"{file}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc})") from None
    except UNPICKLING_ERRORS as exc:  # a truncated or altered batch: whatever the unpickler met
        raise DataError(f"{file}: not a readable CIFAR batch (truncated or damaged: {type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{file}: not a CIFAR batch (a {type(loaded).__name__}, not a dictionary)")
    return loaded


def cifar_batch(file: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, memory-mapped where possible; labels (N,))."""
    batch = read_cifar_pickle(file)
    if b"data" not in batch or label_key not in batch:
        raise DataError(f"{file}: a CIFAR batch needs 'data' and '{label_key.decode()}' (found {sorted(map(str, batch))})")
    data = np.asarray(batch[b"data"])
    labels = class_numbers(f"{file}: '{label_key.decode()}'", batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{file}: 'data' is {data.dtype} {data.shape} with {len(labels)} labels; CIFAR stores "
                        "(N, 3072) uint8 with N labels")  # fmt: skip
    mapped = _mapped_block(file, data)
    rows = mapped if mapped is not None else data
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _mapped_block(file: Path, data: np.ndarray) -> np.ndarray | None:
    """``data``'s bytes memory-mapped where the pickle stores them raw, checked; else None."""
    with open(file, "rb") as handle:
        for op, arg, pos in pickletools.genops(handle):
            width = RAW_BYTES.get(op.name)
            if width and pos is not None and isinstance(arg, (bytes, bytearray, str)) and len(arg) == data.nbytes:
                mapped = np.memmap(file, np.uint8, "r", offset=pos + 1 + width, shape=data.shape)
                return mapped if np.array_equal(mapped, data) else None
    return None


def cifar(path: Path) -> tuple[Split, Split, list[str]]:
    if (path / "data_batch_1").exists():
        train_files, test_file = [path / f"data_batch_{i}" for i in range(1, 6)], path / "test_batch"
        label_key, meta_name, names_key = b"labels", "batches.meta", b"label_names"
    else:
        train_files, test_file = [path / "train"], path / "test"
        label_key, meta_name, names_key = b"fine_labels", "meta", b"fine_label_names"
    for file in [*train_files, test_file]:
        if not file.exists():
            raise DataError(f"{path}: CIFAR file {file.name} is missing")
    parts = [cifar_batch(file, label_key) for file in train_files]
    blocks = [x for x, _ in parts]
    mapped = any(isinstance(x, np.memmap) for x in blocks)
    x_train = _Concatenated(blocks) if mapped and len(blocks) > 1 else blocks[0] if mapped else np.concatenate(blocks)
    x_test, y_test = cifar_batch(test_file, label_key)
    names: list[str] = []
    if (path / meta_name).exists():
        meta = read_cifar_pickle(path / meta_name)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    train = _array_split(f"{path.name}/train", x_train, np.concatenate([y for _, y in parts]))
    return train, _array_split(f"{path.name}/test", x_test, y_test), names


class _Concatenated:
    """Several (memory-mapped) arrays read as one along the first axis, by index."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self.starts, indices, side="right") - 1
        for p in np.unique(part):
            where = part == p
            out[where] = self.parts[p][indices[where] - self.starts[p]]
        return out


class _LazyArraySplit(ArraySplit):
    """An :class:`ArraySplit` over memory maps (or :class:`_Concatenated` ones): read by index.
    ``keep`` is whatever must live as long as the maps (a temporary folder)."""

    def __init__(self, name: str, x: Any, labels: np.ndarray, keep: Any = None) -> None:
        self.name, self.labels, self.x, self.keep = name, class_numbers(name, labels), x, keep
        if len(x) != len(self.labels):
            raise DataError(f"{name}: {len(x)} images but {len(self.labels)} labels")

    @property
    def in_memory(self) -> bool:
        return False

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64)
        if isinstance(self.x, _Concatenated):
            return self.x.take(indices)
        return super().read(indices)


def _array_split(name: str, x: Any, labels: np.ndarray, keep: Any = None) -> Split:
    if len(x.shape) not in (3, 4):
        raise DataError(f"{name}: images of shape {tuple(x.shape)}; expected (examples, height, width[, channels])")
    if isinstance(x, (_Concatenated, np.memmap)):
        return _LazyArraySplit(name, x, labels, keep)
    return ArraySplit(name, x, labels)


# ---------------------------------------------------------------------------- npz


def npz(path: Path) -> tuple[Split, Split, list[str]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file, which is a zip archive of .npy arrays ({exc}); write it "
                        "with numpy.savez") from None  # fmt: skip
    try:
        with archive:
            return _npz_splits(path, archive)
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:  # a damaged member
        raise DataError(f"{path}: a damaged .npz file ({type(exc).__name__}: {exc})") from None


def _npz_splits(path: Path, archive: zipfile.ZipFile) -> tuple[Split, Split, list[str]]:
    members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(members)
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(sorted(missing))} (found {', '.join(sorted(members))})")
    scratch = _Scratch()
    arrays = {key: _npz_member(path, archive, members[key], scratch) for key in ("x_train", "x_test")}
    small = {key: _small_member(path, archive, members[key]) for key in ("y_train", "y_test", "class_names")
             if key in members}  # fmt: skip
    names = [str(n) for n in small.get("class_names", [])]
    train = _array_split(f"{path.name}/train", arrays["x_train"], small["y_train"], scratch)
    test = _array_split(f"{path.name}/test", arrays["x_test"], small["y_test"], scratch)
    return train, test, names


class _Scratch:
    """A temporary folder removed when the last split using it is garbage-collected."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def folder(self) -> Path:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="resnet-spec-npz-"))
            weakref.finalize(self, shutil.rmtree, self.path, True)
        return self.path


def _npz_member(path: Path, archive: zipfile.ZipFile, member: str, scratch: _Scratch) -> np.ndarray:
    info = archive.getinfo(member)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            header = raw.read(30)
            start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
            return _map_npy(path, start, member, info.file_size)
    folder = scratch.folder()
    free = shutil.disk_usage(folder).free
    if info.file_size > free:  # inflating it would fill the disk (a zip bomb, or a set too large for the scratch space)
        raise DataError(f"{path}: member {member} inflates to {info.file_size:,} bytes but {folder} has {free:,} free; "
                        "store the arrays uncompressed (numpy.savez) or set TMPDIR to a larger disk")  # fmt: skip
    target = folder / f"{Path(member).stem}.npy"
    with archive.open(member) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
    return _map_npy(target, 0, member, target.stat().st_size)


def _map_npy(file: Path, start: int, member: str, size: int) -> np.ndarray:
    """The .npy array of ``size`` bytes at ``start`` in ``file``, memory-mapped; its header's
    shape must account for exactly those bytes (a larger one would read past the member)."""
    with open(file, "rb") as handle:
        handle.seek(start)
        try:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
        except (ValueError, EOFError) as exc:
            raise DataError(f"{file}: member {member} is not a .npy array ({exc})") from None
        offset = handle.tell()
    if dtype.hasobject:
        raise DataError(f"{file}: member {member} holds Python objects; only numeric arrays are read")
    data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if data_bytes != size - (offset - start):
        raise DataError(f"{file}: member {member} declares {dtype} {shape} ({data_bytes:,} bytes) but holds "
                        f"{size - (offset - start):,} bytes of data: truncated or altered")  # fmt: skip
    if data_bytes == 0:
        return np.zeros(shape, dtype)
    return np.memmap(file, dtype, "r", offset=offset, shape=shape, order="F" if fortran else "C")


def _small_member(path: Path, archive: zipfile.ZipFile, member: str) -> np.ndarray:
    with archive.open(member) as handle:
        try:
            return np.lib.format.read_array(handle, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{path}: member {member} cannot be read ({exc})") from None


# ---------------------------------------------------------------------------- HDF5


def hdf5(files: list[Path]) -> tuple[Split, Split, list[str]]:
    where: dict[str, tuple[Path, tuple[int, ...], np.dtype[Any]]] = {}
    small: dict[str, np.ndarray] = {}
    for file in files:
        try:
            _hdf5_file(file, where, small)
        except DataError:
            raise
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:  # h5py's errors on damaged files
            raise DataError(f"{file}: not a readable HDF5 file ({exc})") from None
    needed = {"train_set_x", "train_set_y", "test_set_x", "test_set_y"}
    if not needed <= set(where) | set(small):
        raise DataError(f"{', '.join(map(str, files))}: missing datasets {', '.join(sorted(needed - set(where) - set(small)))}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in small.get("list_classes", [])]
    splits = []
    for part in ("train", "test"):
        file, shape, dtype = where[f"{part}_set_x"]
        if len(shape) not in (3, 4):
            raise DataError(f"{file}: {part}_set_x has shape {shape}; expected (examples, height, width[, channels])")
        labels = class_numbers(f"{file}: {part}_set_y", small[f"{part}_set_y"])
        splits.append(HDF5Split(f"{file.name}/{part}", file, f"{part}_set_x", labels, shape, dtype))
    return splits[0], splits[1], names


def _hdf5_file(file: Path, where: dict[str, tuple[Path, tuple[int, ...], np.dtype[Any]]],
               small: dict[str, np.ndarray]) -> None:  # fmt: skip
    import h5py

    with h5py.File(file, "r") as h5:
        for key in h5:
            if key not in ("train_set_x", "test_set_x", "train_set_y", "test_set_y", "list_classes"):
                continue
            item = h5[key]
            if not isinstance(item, h5py.Dataset):
                raise DataError(f"{file}: {key} is a {type(item).__name__}, not a dataset")
            if key.endswith("_x"):
                where[key] = (file, tuple(item.shape), item.dtype)
            else:
                small[key] = np.asarray(item)


# ---------------------------------------------------------------------------- image folders


def image_folder(root: Path) -> tuple[Split, Split, list[str]]:
    """``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (``val`` is ignored), or
    ``ROOT/<class>/*`` split 80/20 (seeded)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        names = classes(root / "train")
        _same_classes(root, names, classes(root / "test"))
        return image_files(root / "train", names, root), image_files(root / "test", names, root), names
    names = classes(root)
    every = image_files(root, names, root)
    order = np.random.default_rng(0).permutation(len(every))
    cut = int(len(order) * 0.8)
    train, test = every.subset(np.sort(order[:cut])), every.subset(np.sort(order[cut:]))
    train.name, test.name = f"{root.name}/train", f"{root.name}/test"
    return train, test, names


def _same_classes(root: Path, train: list[str], test: list[str]) -> None:
    """The test folder's classes are the training folder's: a class more or less would shift
    every later class number (labels come from the sorted folder names)."""
    missing, extra = sorted(set(train) - set(test)), sorted(set(test) - set(train))
    if missing or extra:
        said = [f"misses {', '.join(map(repr, missing))}" if missing else "", f"has {', '.join(map(repr, extra))} "
                "that train/ has not" if extra else ""]  # fmt: skip
        raise DataError(f"{root / 'test'}: the test classes differ from the training classes: test/ "
                        f"{' and '.join(p for p in said if p)}; give both folders the same class subfolders")  # fmt: skip


def classes(folder: Path) -> list[str]:
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not names:
        raise DataError(f"{folder}: no class folders (expected one subfolder per class)")
    return names


def image_files(folder: Path, names: list[str], root: Path) -> ImageFiles:
    paths: list[bytes] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        if not (folder / name).is_dir():
            raise DataError(f"{folder / name}: class '{name}' (found in the training folder) is missing here")
        files = sorted(e.name for e in os.scandir(folder / name) if Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder / name}: class '{name}' has no images")
        prefix = os.fsencode(os.path.relpath(folder / name, root))
        paths += [os.path.join(prefix, os.fsencode(f)) for f in files]
        labels += [label] * len(files)
    return ImageFiles(f"{root.name}/{os.path.relpath(folder, root)}", root, np.array(paths, dtype=np.bytes_),
                      np.array(labels, np.int64))  # fmt: skip
