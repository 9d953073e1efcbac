"""A resnet-spec run directory (``train --out``) as a source: the weights of its checkpoint,
with the graph of the spec it trained (``spec.yaml``), read as a model file is.

The checkpoint is found read-only (:func:`resnet_spec.training.checkpoint.locate`: the folder, or
the complete sibling a crash between its two renames left); nothing in the run directory is
renamed or written. Its backend's weights file is read under :mod:`.safety` like any imported
file: the PyTorch checkpoint through ``torch.load(weights_only=True)`` (its optimizer and random
states are plain tensors and are not used), the Keras one through h5py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import loader
from .model_files import from_model_file
from .read_keras import read_h5
from .read_torch import read_pth, state_dict_arrays
from .safety import ReadLimits, WeightsImportError
from .source import GraphSource
from .state_dict import units_from_state_dict

RUN_FILE = "run.json"
MAX_JSON_BYTES = 1 << 20
# The backends' checkpoint weights (resnet_spec_torch.checkpoint.TRAINING, resnet_spec_keras.checkpoint.WEIGHTS)
WEIGHT_FILES = {"torch": ("training.pt", "PyTorch"), "keras": ("model.weights.h5", "Keras")}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / RUN_FILE).is_file()


def read_run_dir(path: Path, limits: ReadLimits) -> GraphSource:
    from ..training import checkpoint

    meta = _json(path / RUN_FILE)
    folder = checkpoint.locate(path / "checkpoint")
    if folder is None:
        raise WeightsImportError(f"{path}: a run directory without a complete checkpoint (nothing to start from)")
    state = _json(folder / checkpoint.STATE)
    backend, stored_hash = state.get("backend"), meta.get("hash")
    if stored_hash != state.get("hash"):
        raise WeightsImportError(f"{path}: its checkpoint is of another architecture than its run.json says")
    if backend not in WEIGHT_FILES:
        raise WeightsImportError(f"{path}: a checkpoint of backend {backend!r}; runs of torch and keras can be read")
    name, framework = WEIGHT_FILES[backend]
    where = f"{path}, its checkpoint at step {state.get('step')}"
    document = loader.load_file(path / "spec.yaml")
    if not document.ok:
        raise WeightsImportError(f"{path}: its spec.yaml does not load: {document.diagnostics[0].message}")
    if backend == "torch":
        arrays = state_dict_arrays(read_pth(folder / name, limits), str(folder / name))
        units = units_from_state_dict(arrays, "").units
    else:
        units = read_h5(folder / name, limits).units
    return from_model_file(where, document.data, stored_hash, units, framework)


def _json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise WeightsImportError(f"{file}: missing; not a resnet-spec run directory")
    if file.stat().st_size > MAX_JSON_BYTES:
        raise WeightsImportError(f"{file}: larger than {MAX_JSON_BYTES:,} bytes; not a run's own file")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WeightsImportError(f"{file}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise WeightsImportError(f"{file}: not a JSON object")
    return data
