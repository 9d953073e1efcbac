"""Splits: the labelled examples of one part of a data set (training, validation, test), read on
demand, so that memory does not grow with the data set.

Labels are always in memory (8 bytes an example). Pixels are not, except for small sets:

* :class:`ArraySplit`: a NumPy array of fixed-shape images: in memory (digits) or memory-mapped
  (CIFAR batches, uncompressed npz members), read by index;
* :class:`HDF5Split`: an HDF5 dataset, read by index through h5py (each process opens the file
  itself: h5py handles do not survive a fork);
* :class:`ImageFiles`: one image file an example (JPEG, PNG, ...), kept as a NumPy array of
  relative paths (a Python list of strings would be copied page by page into every forked
  input worker as reference counts change); decoded by the backends' input pipelines;
* :class:`IndexedSplit`: a subset of another split (a validation hold-out).

Backends read a split through :meth:`Split.read` (fixed-shape splits, a batch at a time) or
:meth:`Split.files` / :meth:`Split.decode` (image files, one at a time)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .images import MODES, PILLOW_FORMATS, decode_image
from .labels import class_numbers

__all__ = ["MODES", "PILLOW_FORMATS", "ArraySplit", "HDF5Split", "ImageFiles", "IndexedSplit", "Split", "decode_image"]


class Split(ABC):
    def __init__(self, name: str, labels: np.ndarray) -> None:
        self.name = name
        self.labels = class_numbers(name, labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def example_shape(self) -> tuple[int, ...] | None:
        """(height, width, channels) of every example; None when each file has its own."""
        return None

    @property
    def in_memory(self) -> bool:
        """Small and already in memory: pipelines may hold it on the device whole."""
        return False

    @property
    def is_files(self) -> bool:
        return self.example_shape is None

    @property
    def dtype(self) -> np.dtype[Any]:
        """The stored pixels' type (uint8 for image files)."""
        return np.dtype(np.uint8)

    def suffixes(self) -> set[str]:
        """The lower-case file name suffixes of an image-file split (``{".jpg"}``); empty for arrays."""
        return set()

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The examples at ``indices`` as one (n, H, W, C) array (fixed-shape splits)."""
        raise NotImplementedError(f"{self.name} is a set of image files: decode them one by one")

    def files(self, indices: np.ndarray) -> list[str]:
        """The paths of the examples at ``indices`` (image-file splits)."""
        raise NotImplementedError(f"{self.name} holds arrays, not files")

    @property
    def expect(self) -> tuple[int, int, int] | None:
        """Image files: the (height, width, channels) every file must have (the recipe converts
        nothing), or None (files are converted to the input); set by :mod:`.checks`."""
        return None

    def decode(self, index: int, channels: int) -> np.ndarray:
        """Example ``index`` as an (h, w, channels) uint8 array (image-file splits, with Pillow)."""
        return decode_image(self.files(np.array([index]))[0], channels, self.expect)

    @abstractmethod
    def subset(self, indices: np.ndarray) -> Split: ...


class ArraySplit(Split):
    def __init__(self, name: str, x: np.ndarray, labels: np.ndarray) -> None:
        super().__init__(name, labels)
        self.x = x[..., None] if x.ndim == 3 else x
        if len(self.x) != len(self.labels):
            raise DataError(f"{name}: {len(self.x)} images but {len(self.labels)} labels")

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.x, np.memmap)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.x.dtype)

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64)
        if self.in_memory:
            return self.x[indices]
        # A memory map reads pages: in increasing order, each page once.
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices), *self.x.shape[1:]), self.x.dtype)
        out[order] = self.x[indices[order]]
        return out

    def subset(self, indices: np.ndarray) -> Split:
        if self.in_memory:
            return ArraySplit(self.name, self.x[indices], self.labels[indices])
        return IndexedSplit(self, indices)


class HDF5Split(Split):
    def __init__(self, name: str, file: Path, key: str, labels: np.ndarray, shape: tuple[int, ...],
                 dtype: np.dtype[Any]) -> None:  # fmt: skip
        super().__init__(name, labels)
        self.file, self.key, self._shape, self._dtype = Path(file), key, shape, np.dtype(dtype)
        self._handle: Any = None
        self._pid = -1

    @property
    def example_shape(self) -> tuple[int, ...]:
        return self._shape[1:] if len(self._shape) == 4 else (*self._shape[1:], 1)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64)
        unique, inverse = np.unique(indices, return_inverse=True)  # h5py reads increasing indices only
        try:
            if self._pid != os.getpid():  # a new process (an input worker): its own handle
                import h5py

                self._handle, self._pid = h5py.File(self.file, "r")[self.key], os.getpid()
            block = np.asarray(self._handle[unique])
        except (OSError, KeyError, ValueError, TypeError) as exc:  # a file truncated or changed since it was checked
            raise DataError(f"{self.file}: cannot read {self.key} examples {unique[:4].tolist()} ({exc})") from None
        out = block[inverse]
        return out[..., None] if out.ndim == 3 else out

    def subset(self, indices: np.ndarray) -> Split:
        return IndexedSplit(self, indices)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None, "_pid": -1}


class ImageFiles(Split):
    def __init__(self, name: str, root: Path, paths: np.ndarray, labels: np.ndarray) -> None:
        super().__init__(name, labels)
        self.root = Path(root)
        self.paths = np.asarray(paths, dtype=np.bytes_)  # relative, os.fsencode'd
        self.required: tuple[int, int, int] | None = None

    @property
    def expect(self) -> tuple[int, int, int] | None:
        return self.required

    def suffixes(self) -> set[str]:
        tails = np.char.rpartition(self.paths, b".")[:, 2]
        return {"." + os.fsdecode(tail).lower() for tail in np.unique(tails)}

    def files(self, indices: np.ndarray) -> list[str]:
        root = os.fsencode(self.root)
        return [os.fsdecode(os.path.join(root, self.paths[i])) for i in np.asarray(indices, np.int64)]

    def subset(self, indices: np.ndarray) -> Split:
        indices = np.asarray(indices, np.int64)
        subset = ImageFiles(self.name, self.root, self.paths[indices], self.labels[indices])
        subset.required = self.required
        return subset


class IndexedSplit(Split):
    def __init__(self, parent: Split, indices: np.ndarray) -> None:
        self.parent, self.indices = parent, np.asarray(indices, np.int64)
        super().__init__(parent.name, parent.labels[self.indices])

    @property
    def example_shape(self) -> tuple[int, ...] | None:
        return self.parent.example_shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.parent.dtype

    @property
    def expect(self) -> tuple[int, int, int] | None:
        return self.parent.expect

    def suffixes(self) -> set[str]:
        return self.parent.suffixes()

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.parent.read(self.indices[np.asarray(indices, np.int64)])

    def files(self, indices: np.ndarray) -> list[str]:
        return self.parent.files(self.indices[np.asarray(indices, np.int64)])

    def subset(self, indices: np.ndarray) -> Split:
        return IndexedSplit(self.parent, self.indices[np.asarray(indices, np.int64)])
