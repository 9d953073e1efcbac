"""Saving and loading ``.keras`` files that carry their spec.

Keras' ``.keras`` file is a zip (``config.json``, ``metadata.json``, ``model.weights.h5``);
``load_model`` reads those members by name and ignores others, so the spec and its
architecture hash travel in one extra member, ``resnet_spec.json``. Loading rebuilds the
architecture from that spec and refuses the file when the hash differs (the spec and the model
would disagree) or the weights do not fit the architecture.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from resnet_spec import __version__
from resnet_spec.atomic import atomic_path
from resnet_spec.backends import BackendError
from resnet_spec.diagnostics import SpecError
from resnet_spec.loader import Limits
from resnet_spec.pipeline import build_architecture

from . import layers  # noqa: F401  (registers the custom layers load_model must find)
from .introspect import count_params
from .model import deep_recursion

MEMBER = "resnet_spec.json"
FORMAT = 1


def save(model: keras.Model, arch: Any, spec_data: Mapping[str, Any], path: str | Path) -> None:
    path = Path(path)
    if path.suffix != ".keras":
        raise BackendError(f"Keras models are saved as .keras files, not '{path.suffix or path.name}'")
    _rebuild(spec_data, arch.hash, what="the spec to save")  # never write a file load() would refuse
    meta = {"format": FORMAT, "resnet_spec_version": __version__, "hash": arch.hash, "spec": dict(spec_data)}
    try:
        text = json.dumps(meta, indent=2, sort_keys=True)
    except TypeError as exc:
        raise BackendError(f"the spec is not JSON-serializable: {exc}") from exc
    # atomic_path's temporary name keeps the .keras suffix, which model.save insists on.
    with deep_recursion(len(model.layers)), atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(MEMBER, text)


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            # The spec's own size limit, checked before decompressing: a member can be a zip bomb.
            if archive.getinfo(MEMBER).file_size > Limits().max_bytes:
                raise BackendError(f"{path}: {MEMBER} is larger than {Limits().max_bytes:,} bytes")
            return json.loads(archive.read(MEMBER))
    except FileNotFoundError as exc:
        raise BackendError(f"{path}: no such file") from exc
    except zipfile.BadZipFile as exc:
        raise BackendError(f"{path} is not a .keras file (not a zip archive)") from exc
    except KeyError as exc:
        raise BackendError(
            f"{path} was not saved by resnet-spec (no {MEMBER} inside); use keras.models.load_model"
        ) from exc
    except json.JSONDecodeError as exc:
        raise BackendError(f"{path}: {MEMBER} is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # json nests by recursion; the spec's own limit is far lower
        raise BackendError(f"{path}: {MEMBER} nests too deeply to be a spec") from exc


def load(path: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    meta = read_meta(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "spec" not in meta or "hash" not in meta:
        raise BackendError(
            f"{path}: unsupported {MEMBER} (format {meta.get('format') if isinstance(meta, dict) else '?'})"
        )
    arch = _rebuild(meta["spec"], meta["hash"], what=f"{path}")
    with deep_recursion(2 * len(arch.graph)):
        model = keras.models.load_model(path, safe_mode=True)
    found = count_params(model)
    if found != (arch.params_trainable, arch.params_non_trainable):
        raise BackendError(
            f"{path}: the saved model has {found} (trainable, non-trainable) parameters, its spec {(arch.params_trainable, arch.params_non_trainable)}"
        )
    return model, meta


def _rebuild(spec: Any, expected_hash: str, *, what: str) -> Any:
    try:
        arch = build_architecture(spec)
    except SpecError as exc:
        raise BackendError(f"{what}: the embedded spec does not validate: {exc}") from exc
    if arch.hash != expected_hash:
        raise BackendError(
            f"{what}: architecture hash mismatch: the spec gives {arch.hash}, the file says {expected_hash}"
        )
    return arch
