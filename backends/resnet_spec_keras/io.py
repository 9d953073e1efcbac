"""Saving and loading ``.keras`` files that carry their spec.

Keras' ``.keras`` file is a zip (``config.json``, ``metadata.json``, ``model.weights.h5``);
``load_model`` reads those members by name and ignores others, so the spec, its architecture
hash and an integrity record (:mod:`resnet_spec.integrity`: digests of ``config.json``,
``metadata.json``, the spec and every weight) travel in one extra member, ``resnet_spec.json``.

Loading never calls ``keras.models.load_model``, so ``config.json`` is never deserialized: the
network is built from the stored spec once that spec validates and compiles to the stored hash,
and the weights are read from ``model.weights.h5`` with h5py under the import rules
(:mod:`resnet_spec.importing.safety`: hard links only, plain datasets, finite floating point,
declared sizes checked first) and assigned by node name. Before anything is inflated the path
must be a regular file and the zip members' declared sizes must fit the network the spec gives.
Then the digests are compared and what differs is named (a ``config.json`` that swaps relu for
tanh is reported as the part that differs). Files of format 1 have no digests: they load and
the metadata says so.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from resnet_spec import __version__, integrity
from resnet_spec.atomic import atomic_path
from resnet_spec.backends import BackendError
from resnet_spec.diagnostics import SpecError
from resnet_spec.importing.read_keras import _Reader
from resnet_spec.importing.safety import ReadLimits, WeightsImportError, check_declared, one_line
from resnet_spec.loader import Limits
from resnet_spec.pipeline import build_architecture
from resnet_spec.weights import shapes

from . import engine, layers  # noqa: F401  (layers registers the custom layers, for plain load_model users)
from .model import build_model, deep_recursion
from .weights import set_weights

MEMBER = "resnet_spec.json"
FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1: the same file without its integrity record
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
_HEADER = ("format", "resnet_spec_version", "hash")
_NORM_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")  # the order Keras creates them in


def save(model: keras.Model, arch: Any, spec_data: Mapping[str, Any], path: str | Path) -> None:
    path = Path(path)
    if path.suffix != ".keras":
        raise BackendError(f"Keras models are saved as .keras files, not '{path.suffix or path.name}'")
    _rebuild(spec_data, arch.hash, what="the spec to save")  # never write a file load() would refuse
    meta: dict[str, Any] = {"format": FORMAT, "resnet_spec_version": __version__, "hash": arch.hash, "spec": dict(spec_data)}
    try:
        json.dumps(meta)
    except TypeError as exc:
        raise BackendError(f"the spec is not JSON-serializable: {exc}") from exc
    # atomic_path's temporary name keeps the .keras suffix, which model.save insists on.
    with deep_recursion(len(model.layers)), atomic_path(path) as tmp:
        with engine.without_tensorflow_probe():
            model.save(tmp)
        members = integrity.zip_members(tmp, ".keras")
        weights = _read_weights(tmp, members, arch, integrity.model_file_limit(arch))
        meta["integrity"] = integrity.record(_parts(tmp, members, meta), _digests(weights))
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(MEMBER, json.dumps(meta, indent=2, sort_keys=True))


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``resnet_spec.json`` member, parsed (not yet checked)."""
    path = Path(path)
    integrity.regular_file(path, ".keras")
    return _meta(path, integrity.zip_members(path, ".keras"))


def _meta(path: Path, members: Mapping[str, zipfile.ZipInfo]) -> Any:
    if MEMBER not in members:
        raise BackendError(f"{path} was not saved by resnet-spec (no {MEMBER} inside); use keras.models.load_model")
    # The spec's own size limit, checked before decompressing: a member can be a zip bomb.
    data = integrity.read_member(path, members, MEMBER, Limits().max_bytes)
    try:
        return json.loads(data)
    except RecursionError as exc:  # json nests by recursion; the spec's own limit is far lower
        raise BackendError(f"{path}: {MEMBER} nests too deeply to be a spec") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BackendError(f"{path}: {MEMBER} is not valid JSON: {one_line(exc)}") from exc


def load(path: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    path = Path(path)
    integrity.regular_file(path, ".keras")
    members = integrity.zip_members(path, ".keras")
    meta = _meta(path, members)
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else f"a {type(meta).__name__}"
        raise BackendError(f"{path}: unsupported {MEMBER} (format {found!r}; this resnet-spec reads formats 1 and 2)")
    spec = integrity.stored_spec(meta.get("spec"), str(path))
    arch = _rebuild(spec, integrity.stored_hash(meta.get("hash"), str(path)), what=str(path))
    limit = integrity.model_file_limit(arch)
    integrity.check_inflated(path, members.values(), limit, "a model of this spec can hold")
    for name in (CONFIG, WEIGHTS):
        if name not in members:
            raise BackendError(f"{path}: the archive has no {name} (a .keras file holds {CONFIG}, {METADATA} and {WEIGHTS})")
    weights = _read_weights(path, members, arch, limit)
    status = integrity.verify(str(path), meta.get("integrity"), _parts(path, members, meta), _digests(weights),
                              required=meta["format"] >= 2)  # fmt: skip
    model = build_model(arch)
    set_weights(model, arch, _nested(weights))
    out = {k: v for k, v in meta.items() if k != "integrity"}
    out["integrity"] = status
    return model, out


def _parts(path: Path, members: Mapping[str, zipfile.ZipInfo], meta: Mapping[str, Any]) -> dict[str, str]:
    """Digests of the model description: Keras' own members and resnet-spec's header and spec."""
    parts = {
        "header": integrity.digest_data({key: meta.get(key) for key in _HEADER}),
        "spec": integrity.digest_data(meta["spec"]),
    }
    for name in (CONFIG, METADATA):
        if name in members:
            parts[name] = integrity.digest_bytes(integrity.read_member(path, members, name, integrity.MAX_DESCRIPTION_BYTES))
    return parts


def _digests(weights: Mapping[str, np.ndarray]) -> dict[str, str]:
    return {name: integrity.digest_numpy(array) for name, array in weights.items()}


def _nested(weights: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, array in weights.items():
        node, key = name.rsplit("/", 1)
        out.setdefault(node, {})[key] = array
    return out


def _read_weights(path: Path, members: Mapping[str, zipfile.ZipInfo], arch: Any, limit: int) -> dict[str, np.ndarray]:
    """``{"node/key": array}`` from ``model.weights.h5``, every tensor checked, names and shapes
    matched with the spec's graph before any value is read."""
    import h5py

    data = integrity.read_member(path, members, WEIGHTS, limit)
    where = f"{path} ({WEIGHTS})"
    try:
        with h5py.File(io.BytesIO(data), "r") as root:
            return _datasets(_Reader(h5py, where, ReadLimits(max_bytes=limit)), root, arch, where)
    except BackendError:
        raise
    except Exception as exc:  # h5py raises OSError / KeyError / ValueError for damaged files
        raise BackendError(f"{where}: not readable Keras weights ({type(exc).__name__}: {one_line(exc)})") from exc


def _datasets(reader: Any, root: Any, arch: Any, where: str) -> dict[str, np.ndarray]:
    expected = shapes(arch)
    found: dict[str, Any] = {}
    seen: set[str] = set()
    try:
        layers_group = reader.child(root, "layers")
        for key in layers_group:
            group = reader.child(layers_group, key)
            if "layers" in group:
                raise BackendError(f"{where}: layer group {key!r} holds a nested model; resnet-spec models are flat")
            variables = reader.child(group, "vars") if "vars" in group else None
            if variables is None or len(variables) == 0:
                continue
            name = _text(variables.attrs.get("name", key))
            if name in seen:
                raise BackendError(f"{where}: two layer groups hold the weights of {name!r}")
            seen.add(name)
            keys = _keras_order(expected.get(name, {}))
            if len(keys) != len(variables):
                raise BackendError(
                    f"{where}: layer {name!r} holds {len(variables)} variables, the spec's graph expects {len(keys)}"
                    + (f" ({', '.join(keys)})" if keys else "")
                )
            for i, variable in enumerate(keys):
                found[f"{name}/{variable}"] = reader.dataset(variables, str(i), f"{name}/{variable}")
        wanted = {f"{node}/{k}": shape for node, entry in expected.items() for k, shape in entry.items()}
        integrity.check_shapes(where, wanted, {name: tuple(ds.shape) for name, ds in found.items()})
        check_declared(where, reader.declared, len(found), reader.limits)
        return {name: integrity.check_tensor(name, np.asarray(ds[()])) for name, ds in found.items()}
    except WeightsImportError as exc:
        message = str(exc)
        raise BackendError(message if message.startswith(where) else f"{where}: tensor {message}") from None


def _keras_order(entry: Mapping[str, Any]) -> list[str]:
    if "moving_mean" in entry:
        return [key for key in _NORM_ORDER if key in entry]
    return [key for key in ("kernel", "bias") if key in entry]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _rebuild(spec: Any, expected_hash: str, *, what: str) -> Any:
    try:
        arch = build_architecture(spec)
    except SpecError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise BackendError(f"{what}: the embedded spec does not validate: {first}") from exc
    if arch.hash != expected_hash:
        raise BackendError(
            f"{what}: architecture hash mismatch: the spec gives {arch.hash}, the file says {expected_hash}"
        )
    return arch
