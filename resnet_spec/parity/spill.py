"""Where one framework's results wait for the other's: a folder of ``.npy`` / ``.npz`` files
(or, for small networks, a dict), written one node at a time and removed as soon as they are
compared.

The first framework's eval outputs, train-mode outputs, statistics, gradients and weights go
here; the second framework compares its own, node by node, against them as it computes them.
So at no time does a run hold every node's outputs of both frameworks (ResNet-152's float64
node outputs for a batch of two are 1.3 GB per forward and framework). File names are the
keys (graph node names are dotted identifiers), so another process can open the same folder."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

_SAFE = re.compile(r"^[A-Za-z0-9_.\-/]+$")


class Spill:
    """A keyed store of arrays and of small dicts of arrays (a node's tensors).

    ``Spill()`` makes (and on :meth:`close` removes) a temporary folder; ``Spill(folder)``
    opens one another process made; ``Spill(on_disk=False)`` keeps everything in memory."""

    def __init__(self, directory: str | Path | None = None, *, on_disk: bool = True):
        self._memory: dict[str, object] | None = None if on_disk else {}
        self._owned = directory is None and on_disk
        self.root = Path(tempfile.mkdtemp(prefix="resnet-spec-parity-")) if self._owned else Path(directory or ".")

    def __getstate__(self) -> dict[str, object]:
        """A copy sent to another process never removes the folder: its maker does."""
        return self.__dict__ | {"_owned": False}

    @property
    def on_disk(self) -> bool:
        return self._memory is None

    @staticmethod
    def _check(key: str) -> str:
        if not _SAFE.match(key) or ".." in key:
            raise ValueError(f"spill key {key!r} is not a plain name")
        return key

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / (self._check(key).replace("/", "__") + suffix)

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value``; in memory the array itself is kept (the caller hands it over)."""
        if self._memory is not None:
            self._memory[self._check(key)] = np.asarray(value)
        else:
            np.save(self._path(key, ".npy"), np.asarray(value), allow_pickle=False)

    def get(self, key: str) -> np.ndarray | None:
        if self._memory is not None:
            found = self._memory.get(key)
            return found if isinstance(found, np.ndarray) else None
        path = self._path(key, ".npy")
        return np.load(path, allow_pickle=False) if path.exists() else None

    def take(self, key: str) -> np.ndarray | None:
        """``get`` and forget (the file is removed once read)."""
        if self._memory is not None:
            found = self._memory.pop(key, None)
            return found if isinstance(found, np.ndarray) else None
        value = self.get(key)
        self._path(key, ".npy").unlink(missing_ok=True)
        return value

    def put_tensors(self, key: str, tensors: Mapping[str, np.ndarray]) -> None:
        if self._memory is not None:
            self._memory[self._check(key)] = {name: np.asarray(value) for name, value in tensors.items()}
        else:
            arrays: dict[str, Any] = {name: np.asarray(value) for name, value in tensors.items()}
            with open(self._path(key, ".npz"), "wb") as handle:
                np.savez(handle, **arrays)

    def get_tensors(self, key: str) -> dict[str, np.ndarray] | None:
        if self._memory is not None:
            found = self._memory.get(key)
            return dict(found) if isinstance(found, dict) else None
        path = self._path(key, ".npz")
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    def take_tensors(self, key: str) -> dict[str, np.ndarray] | None:
        if self._memory is not None:
            found = self._memory.pop(key, None)
            return found if isinstance(found, dict) else None
        value = self.get_tensors(key)
        self._path(key, ".npz").unlink(missing_ok=True)
        return value

    def discard(self, key: str) -> None:
        if self._memory is not None:
            self._memory.pop(key, None)
        else:
            self._path(key, ".npy").unlink(missing_ok=True)
            self._path(key, ".npz").unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[str]:
        """Keys still held under ``prefix`` (what the other side has not taken)."""
        if self._memory is not None:
            return [k for k in self._memory if k.startswith(prefix)]
        start = prefix.replace("/", "__")
        return [p.stem.replace("__", "/") for p in sorted(self.root.glob(f"{start}*")) if p.suffix in (".npy", ".npz")]

    def close(self) -> None:
        if self._memory is not None:
            self._memory.clear()
        elif self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpilledWeights(Mapping[str, Mapping[str, np.ndarray]]):
    """Neutral weights read from a spill one node at a time (what ``set_weights`` iterates), so
    that the starting weights of a large network need not stay in memory while a model runs.
    ``overrides`` replace single tensors (the statistics of a calibrated start)."""

    def __init__(self, spill: Spill, prefix: str, nodes: list[str],
                 overrides: Mapping[str, Mapping[str, np.ndarray]] | None = None):  # fmt: skip
        self.spill, self.prefix, self.nodes = spill, prefix, list(nodes)
        self._members = set(self.nodes)
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}

    @classmethod
    def store(cls, spill: Spill, prefix: str, weights: Mapping[str, Mapping[str, np.ndarray]]) -> SpilledWeights:
        for node, tensors in weights.items():
            spill.put_tensors(f"{prefix}/{node}", tensors)
        return cls(spill, prefix, list(weights))

    def __getitem__(self, node: str) -> Mapping[str, np.ndarray]:
        tensors = self.spill.get_tensors(f"{self.prefix}/{node}") if node in self._members else None
        if tensors is None:
            raise KeyError(node)
        return tensors | self.overrides.get(node, {})

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, np.ndarray]]) -> SpilledWeights:
        merged = {k: dict(v) for k, v in self.overrides.items()}
        for node, tensors in overrides.items():
            merged.setdefault(node, {}).update(tensors)
        return SpilledWeights(self.spill, self.prefix, self.nodes, merged)
