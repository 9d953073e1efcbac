"""Keras weights: ``.h5`` / ``.weights.h5`` files and ``.keras`` archives, read with h5py.

Two HDF5 layouts exist:

* **Keras 2 / legacy** (the ``keras.applications`` downloads, ``model.save("x.h5")``): a root
  (or ``model_weights``) group whose ``layer_names`` attribute lists the layers; each layer's
  ``weight_names`` attribute names its datasets (``conv1_conv/kernel:0``). A nested model is one
  layer whose weight names carry the inner layers' names.
* **Keras 3** (``model.save_weights("x.weights.h5")``, the ``model.weights.h5`` member of a
  ``.keras`` archive): ``layers/<class key>/vars/<i>``, the layer's own name in the ``vars``
  group's ``name`` attribute and its class in the key (``conv2d_3``, ``batch_normalization``);
  a nested model is ``layers/<key>/layers/...``. Variables are numbered in the order the layer
  creates them: kernel, bias; gamma, beta, moving mean, moving variance.

Only hard links are followed (a soft or external link could point into another file), datasets
must be plain (no external storage, not virtual), floating point, and their declared sizes are
added up and checked before any is read. A ``.keras`` archive is opened as a zip: its
``model.weights.h5`` member (size checked before inflating) is the only part read, and the
``resnet_spec.json`` member where there is one; ``config.json`` is never deserialized.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..loader import Limits as SpecLimits
from .safety import (
    FLOAT_NAMES,
    ReadLimits,
    WeightsImportError,
    check_declared,
    check_file,
    check_shape,
    check_zip,
    checked_array,
    one_line,
)
from .source import Kind, NamedSource, SourceTensor, Unit, split_name

H5_MAGIC = b"\x89HDF\r\n\x1a\n"
WEIGHTS_MEMBER = "model.weights.h5"
SPEC_MEMBER = "resnet_spec.json"
_SEPARATORS = "._/"
# resnet-spec's own Keras models add one class with weights: a batch norm with unbiased running variance.
_KERAS3_KINDS: dict[str, Kind] = {
    "conv2d": "conv", "dense": "dense", "batch_normalization": "norm", "unbiased_batch_normalization": "norm",
}  # fmt: skip
_NORM_ORDER = {4: ("gamma", "beta", "moving_mean", "moving_variance"), 2: ("moving_mean", "moving_variance")}
_MAX_NESTING = 16


def read_h5(path: Path, limits: ReadLimits) -> NamedSource:
    check_file(path, limits)
    with path.open("rb") as handle:
        if handle.read(8) != H5_MAGIC:
            raise WeightsImportError(f"{path}: not an HDF5 file (Keras weights are .h5 / .weights.h5 HDF5 files)")
    return _read(path, str(path), limits)


def read_keras_archive(path: Path, limits: ReadLimits) -> tuple[dict[str, Any] | None, NamedSource]:
    """(the resnet-spec metadata if the archive has it, its weights)."""
    check_file(path, limits)
    members = {m.filename: m for m in check_zip(path, limits, ".keras archive")}
    if WEIGHTS_MEMBER not in members:
        raise WeightsImportError(f"{path}: a zip archive without {WEIGHTS_MEMBER}: not a Keras .keras file")
    meta = None
    with zipfile.ZipFile(path) as archive:
        if SPEC_MEMBER in members:
            if members[SPEC_MEMBER].file_size > SpecLimits().max_bytes:  # the spec loader's own limit
                raise WeightsImportError(f"{path}: {SPEC_MEMBER} declares more than {SpecLimits().max_bytes:,} bytes")
            try:
                meta = json.loads(archive.read(SPEC_MEMBER))
            except (ValueError, RecursionError) as exc:
                raise WeightsImportError(f"{path}: {SPEC_MEMBER} is not valid JSON ({one_line(exc)})") from None
        data = archive.read(WEIGHTS_MEMBER)
    return meta, _read(io.BytesIO(data), f"{path} ({WEIGHTS_MEMBER})", limits)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise WeightsImportError("reading Keras weights needs h5py: pip install h5py") from None
    return h5py


def _read(file: Any, where: str, limits: ReadLimits) -> NamedSource:
    h5py = _h5py()
    try:
        with h5py.File(file, "r") as root:
            reader = _Reader(h5py, where, limits)
            if "layers" in root and isinstance(root.get("layers", getlink=True), h5py.HardLink):
                reader.keras3(reader.child(root, "layers"), ())
                kind = "Keras 3 weights"
            else:
                group = reader.child(root, "model_weights") if "model_weights" in root else root
                if "layer_names" not in group.attrs:
                    raise WeightsImportError(
                        f"{where}: an HDF5 file without Keras weights (no layers group, no layer_names)"
                    )
                reader.legacy(group)
                kind = "Keras weights (HDF5, legacy layout)"
            return reader.finish(f"{where} ({kind}, {len(reader.entries)} layers)")
    except WeightsImportError:
        raise
    except Exception as exc:  # h5py raises OSError / KeyError / ValueError for damaged files
        raise WeightsImportError(
            f"{where}: not a readable Keras weights file ({type(exc).__name__}: {one_line(exc)})"
        ) from exc


class _Reader:
    """Collects (unit description, datasets) first, checks the declared total, then reads."""

    def __init__(self, h5py: Any, where: str, limits: ReadLimits):
        self.h5py, self.where, self.limits = h5py, where, limits
        self.entries: list[tuple[str, tuple[str, ...], Kind, dict[str, Any]]] = []
        self.declared = 0
        self.ordered = False  # legacy files list their layers in the model's order; Keras 3 files by class

    def child(self, group: Any, name: str) -> Any:
        link = group.get(name, getlink=True)
        if link is None:
            raise WeightsImportError(f"{self.where}: {group.name}/{name} is missing")
        if not isinstance(link, self.h5py.HardLink):
            raise WeightsImportError(
                f"{self.where}: {group.name}/{name} is a {type(link).__name__}; links to other objects or files are not followed"
            )
        return group[name]

    def dataset(self, group: Any, name: str, label: str) -> Any:
        data = self.child(group, name)
        if not isinstance(data, self.h5py.Dataset):
            raise WeightsImportError(f"{self.where}: {data.name} is not a dataset")
        if data.is_virtual or data.external:
            raise WeightsImportError(f"{self.where}: {data.name} keeps its data outside the file; not read")
        if data.dtype.kind != "f" or data.dtype.itemsize not in (2, 4, 8):
            raise WeightsImportError(f"{label}: dtype {data.dtype}; weights must be {FLOAT_NAMES}")
        self.declared += check_shape(label, tuple(data.shape), data.dtype.itemsize)
        return data

    def keras3(self, layers: Any, prefix: tuple[str, ...]) -> None:
        if len(prefix) > _MAX_NESTING:
            raise WeightsImportError(f"{self.where}: models nested more than {_MAX_NESTING} deep")
        for key in layers:
            group = self.child(layers, key)
            variables = self.child(group, "vars") if "vars" in group else None
            name = _text(variables.attrs.get("name", key)) if variables is not None else key
            if "layers" in group:
                self.keras3(self.child(group, "layers"), (*prefix, name))
                continue
            if variables is None or len(variables) == 0:
                continue
            self._keras3_layer(re.sub(r"_\d+$", "", key), variables, prefix, name)

    def _keras3_layer(self, cls: str, variables: Any, prefix: tuple[str, ...], name: str) -> None:
        label = "/".join((*prefix, name))
        kind = _KERAS3_KINDS.get(cls)
        if kind is None:
            raise WeightsImportError(
                f"{label}: a {cls} layer with weights; a spec holds convolutions, dense layers and batch norms"
            )
        count = len(variables)
        if kind == "norm":
            if count not in _NORM_ORDER:
                raise WeightsImportError(
                    f"{label}: a batch norm with {count} variables (which of gamma and beta it learns is unknown)"
                )
            keys = _NORM_ORDER[count]
        else:
            keys = ("kernel", "bias")[:count] if count in (1, 2) else ()
            if not keys:
                raise WeightsImportError(f"{label}: a {cls} layer with {count} variables; expected a kernel and a bias")
        found = {key: self.dataset(variables, str(i), f"{label}/{key}") for i, key in enumerate(keys)}
        self.entries.append((label, (*prefix, *split_name(name, _SEPARATORS)), kind, found))

    def legacy(self, group: Any) -> None:
        self.ordered = True
        for layer in (_text(n) for n in group.attrs["layer_names"]):
            layer_group = self.child(group, layer)
            names = [_text(n) for n in layer_group.attrs.get("weight_names", [])]
            by_prefix: dict[str, dict[str, Any]] = {}
            for weight in names:
                *parents, last = weight.split("/")
                holder: Any = layer_group
                for part in parents:
                    holder = self.child(holder, part)
                variable = last.split(":")[0]  # Keras 2 names datasets "kernel:0"
                by_prefix.setdefault("/".join(parents), {})[variable] = self.dataset(holder, last, f"{layer}/{weight}")
            for inner, found in by_prefix.items():
                nested = inner and inner != layer
                label = f"{layer}/{inner}" if nested else layer
                path = (layer, *split_name(inner, _SEPARATORS)) if nested else split_name(layer, _SEPARATORS)
                self.entries.append((label, path, _legacy_kind(label, found), found))

    def finish(self, description: str) -> NamedSource:
        check_declared(self.where, self.declared, sum(len(e[3]) for e in self.entries), self.limits)
        units = []
        for index, (label, path, kind, found) in enumerate(self.entries):
            tensors = {
                key: SourceTensor(f"{label}/{key}", checked_array(f"{label}/{key}", np.asarray(data[()])))
                for key, data in found.items()
            }
            units.append(Unit(kind, label, path, tensors, "neutral", order=index if self.ordered else None))
        return NamedSource(description, units)


def _legacy_kind(label: str, found: dict[str, Any]) -> Kind:
    keys = set(found)
    if {"moving_mean", "moving_variance"} <= keys <= {"gamma", "beta", "moving_mean", "moving_variance"}:
        return "norm"
    if "kernel" in keys and keys <= {"kernel", "bias"} and len(found["kernel"].shape) in (2, 4):
        return "conv" if len(found["kernel"].shape) == 4 else "dense"
    raise WeightsImportError(
        f"{label}: weights {', '.join(sorted(keys))}; a spec holds convolutions, dense layers and batch norms"
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
