"""A trained network leaves the tool: a run's checkpoint (or a saved model file) -> the
self-describing model file ``compile`` writes (``.pt``, ``.keras``), or ONNX.

The model files are written by the backends' own ``save`` (the formats are theirs; nothing here
forks them). ONNX goes through the PyTorch backend: a Keras-trained network is first copied into
the PyTorch one by :func:`resnet_spec.parity.transfer` (the machinery of ``convert``), and the
written file is run with onnxruntime and compared with the PyTorch forward before it is put in
place. Nothing here imports a framework; the backends do, when called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BackendError, backend_for_file, get_backend
from .pipeline import Architecture, validate
from .training import checkpoint

RUN_FILE, SPEC_FILE = "run.json", "spec.yaml"  # written by resnet_spec.training.commands.train
LAST, BEST = "checkpoint", "checkpoint-best"  # folders of a run; the best one exists where it validated
ONNX_SUFFIX, PROGRAM_SUFFIX = ".onnx", ".pt2"
ONNX_RELATIVE_LIMIT = 1e-5  # max |onnxruntime - torch| / max |torch| on the check batch
CHECK_BATCH = 3  # not the export's example batch (2): the check also exercises the dynamic batch
TRAINING_FILES = ("training.pt", "model.weights.h5", "optimizer.npz", "state.json")


class ExportError(Exception):
    """A source or a file the user gave cannot be exported or compared (exit status 1)."""


@dataclass
class Source:
    """A trained network, whatever it came from: its architecture, the spec data to store with it,
    the backend that holds it and the native model."""

    arch: Architecture
    spec_data: dict[str, Any]
    backend: str
    model: Any
    origin: str  # for messages: "runs/r1: last checkpoint, step 12, trained with torch"


def open_source(path: Path, which: str = "last") -> Source:
    """A run directory (its ``which`` checkpoint) or a model file a backend saved."""
    if path.is_file():
        return _model_file(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such run directory or model file")
    return _run(path, which)


def _model_file(path: Path) -> Source:
    hint = training_path_hint(path)
    if hint:
        raise ExportError(hint)
    try:
        name = backend_for_file(path)
        model, meta = get_backend(name).load(path)
    except BackendError as exc:
        raise ExportError(str(exc)) from exc
    arch = _architecture(meta["spec"], f"{path} (stored spec)")
    return Source(arch, dict(meta["spec"]), name, model, f"{path}: a {name} model file")


def _run(run: Path, which: str) -> Source:
    if not (run / RUN_FILE).is_file():
        hint = training_path_hint(run)
        raise ExportError(hint or f"{run}: not a run directory (no {RUN_FILE}); pass the --out folder of `resnet-spec train`")
    try:
        meta = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
        backend_name, expected = str(meta["backend"]), str(meta["hash"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{run / RUN_FILE}: not a readable run file ({type(exc).__name__}: {exc})") from exc
    result = validate(run / SPEC_FILE)
    if result.architecture is None or result.document is None:
        raise ExportError(f"{run / SPEC_FILE}: the run's spec does not validate; `resnet-spec validate {run / SPEC_FILE}` says why")
    arch = result.architecture
    if arch.hash != expected:
        raise ExportError(f"{run}: {SPEC_FILE} no longer gives the architecture this run trained ({expected[:19]})")
    folder = _checkpoint(run, which, arch.hash, meta)
    backend = get_backend(backend_name)
    if not hasattr(backend, "checkpoint_model"):
        raise ExportError(f"backend '{backend_name}' cannot read its checkpoints for export (no checkpoint_model)")
    try:
        model = backend.checkpoint_model(arch, folder)
    except BackendError as exc:
        raise ExportError(str(exc)) from exc
    state = checkpoint.read_state(folder)
    scored = state.get("validation")
    score = f" (validation accuracy {scored['accuracy']:.2%})" if which == "best" and isinstance(scored, dict) else ""
    return Source(arch, dict(result.document.data), backend_name, model,
                  f"{run}: {which} checkpoint, step {state.get('step')}{score}, trained with {backend_name}")  # fmt: skip


def _checkpoint(run: Path, which: str, arch_hash: str, meta: dict[str, Any]) -> Path:
    target = run / (BEST if which == "best" else LAST)
    choice = checkpoint.choose(target)
    folder = choice.folder
    if folder is None:
        if which == "best":
            raise ExportError(_no_best(run, meta, choice))
        raise ExportError(f"{run}: no complete checkpoint in {LAST}/ (did the run stop before its first one?)")
    try:
        checkpoint.for_evaluation(folder, arch_hash)
    except BackendError as exc:
        raise ExportError(str(exc)) from exc
    return folder


def _no_best(run: Path, meta: dict[str, Any], choice: checkpoint.Choice) -> str:
    """Why a run has no best checkpoint, in one line: 'best' is by validation accuracy, so a run
    without validation data has none; a damaged one is named; else it never finished a validated epoch."""
    recipe = meta.get("recipe")
    split = recipe.get("validation_split") if isinstance(recipe, dict) else None
    if split == 0:
        return (f"{run}: no best checkpoint: the best epoch is the one of the best validation accuracy, and this run "
                "had no validation data (training.validation_split: 0); export it with --checkpoint last, or train "
                "with training.validation_split > 0")  # fmt: skip
    why = choice.describe_rejected() if choice.rejected else "none was written (no validated epoch ended)"
    return f"{run}: no best checkpoint in {BEST}/ ({why}); export it with --checkpoint last"


def _architecture(spec: Any, where: str) -> Architecture:
    from .pipeline import build_architecture

    return build_architecture(spec, filename=where)


def training_path_hint(path: Path) -> str | None:
    """The message for a path inside a run given where a model file is expected (``load``,
    ``convert``, ``evaluate``, ``parity``): a checkpoint folder or file, or the run itself."""
    run = None
    if path.is_dir() and (path / RUN_FILE).is_file():
        run = path
    elif path.is_dir() and (path / checkpoint.STATE).is_file():
        run = path.parent
    elif path.is_file() and path.name in TRAINING_FILES and (path.parent / checkpoint.STATE).is_file():
        run = path.parent.parent
    if run is None:
        return None
    what = "a training run" if run == path else ("a training checkpoint" if path.is_dir() else "part of a training checkpoint")
    return (f"{path} is {what}, not a model file; write one with "
            f"`resnet-spec export {run} -o model.pt` (or .keras, .onnx)")  # fmt: skip


# -- writing -------------------------------------------------------------------------------------

def suffixes() -> dict[str, str]:
    """Output suffix -> what writes it: every installed backend's, and ONNX (through torch)."""
    from .backends import available

    found: dict[str, str] = {}
    for name in available():
        try:
            found.setdefault(get_backend(name).suffix, name)
        except BackendError:
            continue
    found.setdefault(ONNX_SUFFIX, "onnx")
    found.setdefault(PROGRAM_SUFFIX, "pt2")
    return found


def write_model(source: Source, target: str, output: Path) -> None:
    """``source`` as the model file of backend ``target`` (its own ``save``)."""
    backend = get_backend(target)
    model = in_backend(source, target)
    backend.save(model, source.arch, source.spec_data, output)


def in_backend(source: Source, target: str) -> Any:
    """The source's network as a model of backend ``target``: itself, or a copy whose weights
    (norm statistics included) are transferred through the neutral layout, as ``convert`` does."""
    if target == source.backend:
        return source.model
    from .parity import transfer

    model = get_backend(target).build(source.arch)
    transfer(source.model, source.backend, model, target, source.arch)
    return model


Differences = dict[str, tuple[float, float]]  # output name -> (max abs, max rel)


def write_onnx(source: Source, output: Path, opset: int | None = None) -> Differences:
    """Export through the torch backend, check the file with onnxruntime and return, for every
    output, (max abs, max rel) of onnxruntime against the torch forward (each relative to its
    own output's largest magnitude); beyond the limit in any output, nothing is left at ``output``."""
    from .atomic import atomic_path

    torch_backend: Any = get_backend("torch")  # the export members are the torch backend's own
    model = in_backend(source, "torch")
    with atomic_path(output) as tmp:  # a file that fails the check is never put in place
        torch_backend.export_onnx(model, source.arch, source.spec_data, tmp, opset)
        found = onnx_difference(tmp, torch_backend, model, source.arch)
        _within_limit(found, output, "onnxruntime's output")
    return found


def write_program(source: Source, output: Path) -> Differences:
    """A ``torch.export`` archive through the torch backend, loaded back as plain PyTorch loads
    it and compared with the forward, output by output. Beyond the limit, nothing is written."""
    from .atomic import atomic_path

    torch_backend: Any = get_backend("torch")  # the export members are the torch backend's own
    model = in_backend(source, "torch")
    with atomic_path(output) as tmp:
        torch_backend.export_program(model, source.arch, source.spec_data, tmp)
        images = check_images(source.arch)
        found = differences(torch_backend.predict_program(tmp, images, source.arch),
                            torch_backend.predict(model, images, source.arch))  # fmt: skip
        _within_limit(found, output, "the exported program")
    return found


def _within_limit(found: Differences, output: Path, what: str) -> None:
    for name, (_, rel_diff) in found.items():
        if not rel_diff <= ONNX_RELATIVE_LIMIT:
            where = f" in output '{name}'" if len(found) > 1 else ""
            raise ExportError(f"{output}: {what} differs from PyTorch's by {rel_diff:.3g} relative{where} "
                              f"(limit {ONNX_RELATIVE_LIMIT:g}); the file was not written")  # fmt: skip


def differences(got: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> Differences:
    """Output by output (the reference's names and order); a missing output is infinitely off."""
    from .parity import compare

    missing = (float("inf"), float("inf"))
    return {name: compare(got[name], value) if name in got else missing for name, value in reference.items()}


def check_images(arch: Architecture, batch: int = CHECK_BATCH, seed: int = 0) -> np.ndarray:
    """The batch both sides of a check see: standard normal NHWC float32 images, seeded."""
    shape = arch.spec.input
    return np.random.default_rng(seed).standard_normal((batch, shape.height, shape.width, shape.channels)).astype(np.float32)


def onnx_difference(path: Path, torch_backend: Any, model: Any, arch: Architecture,
                    batch: int = CHECK_BATCH) -> Differences:  # fmt: skip
    from . import onnx_files

    images = check_images(arch, batch)
    reference = torch_backend.predict(model, images, arch)
    return differences(onnx_files.outputs(onnx_files.session(path), images), reference)
