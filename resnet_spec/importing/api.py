"""``import_weights``: read a source, match it to the spec, check the match, convert the weights."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import graph as g
from .fit import Mismatch, neutral_weights
from .match_graph import match_graph
from .match_names import match_names
from .model_files import from_model_file
from .read_keras import H5_MAGIC, read_h5, read_keras_archive
from .read_torch import ZIP_MAGIC, read_pth, read_safetensors, state_dict_arrays
from .result import ImportResult
from .run_dirs import is_run_dir, read_run_dir
from .safety import ReadLimits, WeightsImportError, check_file, check_zip, limits_for
from .skeleton import StructureError, skeleton
from .source import GraphSource, NamedSource, Source
from .state_dict import units_from_state_dict
from .target import Target, target_of

if TYPE_CHECKING:
    from ..pipeline import Architecture

Classifier = Literal["import", "new", "auto"]
CLASSIFIER = "head.classifier"
TORCH_FORMAT = "resnet-spec/torch"
NO_STRIDES = (
    "a weights file records shapes, not strides or padding: if the network that saved it strides or pads "
    "elsewhere than the spec, the weights still fit; compare one output with it (docs/importing.md)"
)


def import_weights(
    arch: Architecture, source: Any, *, classifier: Classifier = "import", exclude: Iterable[str] = (),
    limits: ReadLimits | None = None,
) -> ImportResult:  # fmt: skip
    """Weights for ``arch`` from ``source``, matched by structure and shapes.

    ``source``: a file path (PyTorch ``.pth`` / ``.pt`` / ``.bin`` state dict or checkpoint,
    ``.safetensors``, Keras ``.h5`` / ``.weights.h5`` / ``.keras``, a resnet-spec model file), a
    resnet-spec run directory (``train --out``: its checkpoint),
    a state dict (a mapping of names to tensors), a ``torch.nn.Module`` or a ``keras.Model``.

    ``classifier``: ``"import"`` takes the source's classifier too (its shapes must fit);
    ``"new"`` leaves ``head.classifier`` to the caller (``result.new``); ``"auto"`` imports it
    when it fits and leaves it new when it does not (other ``classes``), saying so in
    ``result.notes``. ``exclude``: more head layers to leave new (names, or ``"head"`` for all).

    Raises :class:`WeightsImportError` (a ``BackendError``) with a one-line message: the file
    refused and why, or the first spec node the source does not fit.
    """
    if classifier not in ("import", "new", "auto"):
        raise ValueError(f"classifier must be 'import', 'new' or 'auto', not {classifier!r}")
    excluded = _excluded(arch, exclude) | ({CLASSIFIER} if classifier == "new" else set())
    read = read_source(source, arch, limits or limits_for(arch))
    try:
        return _match(arch, read, excluded)
    except WeightsImportError as failure:
        if classifier != "auto" or CLASSIFIER in excluded:
            raise
        try:
            result = _match(arch, read, excluded | {CLASSIFIER})
        except WeightsImportError:
            raise failure from None
        result.notes.insert(0, f"{CLASSIFIER} is new: the source's classifier does not fit it ({failure.reason})")
        return result


def _excluded(arch: Architecture, names: Iterable[str]) -> set[str]:
    heads = [node.name for node in arch.graph if node.name.startswith("head.")]
    chosen: set[str] = set()
    for name in names:
        found = [h for h in heads if h == name or h.startswith(name.rstrip(".") + ".")]
        if not found:
            raise WeightsImportError(
                f"exclude: '{name}' names no head layer; only head layers ({', '.join(heads)}) can be left new"
            )
        chosen.update(found)
    return chosen


# ---------------------------------------------------------------------- reading


def read_source(source: Any, arch: Architecture, limits: ReadLimits) -> Source:
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        if is_run_dir(path):
            return read_run_dir(path, limits)
        return read_file(path, limits)
    if isinstance(source, Mapping):
        arrays = state_dict_arrays(source, "the state dict")
        return units_from_state_dict(arrays, f"a state dict of {len(arrays)} tensors")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
        from .trace_torch import trace_module

        return trace_module(source, arch.graph.input.shape, f"the {type(source).__name__} module")
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(source, keras.Model):
        from .trace_keras import graph_of_model

        return graph_of_model(source, f"the Keras model '{source.name}'")
    raise WeightsImportError(
        f"cannot import weights from a {type(source).__name__}: give a file path, a state dict, a torch.nn.Module or a keras.Model"
    )


def read_file(path: Path, limits: ReadLimits) -> Source:
    check_file(path, limits)
    with path.open("rb") as handle:
        head = handle.read(9)
    if head.startswith(H5_MAGIC):
        return read_h5(path, limits)
    if head.startswith(ZIP_MAGIC):
        names = {m.filename for m in check_zip(path, limits, "zip archive")}
        if "model.weights.h5" in names:
            return _keras_archive(path, limits)
        if any(n.endswith("data.pkl") for n in names):
            return _torch_file(path, limits)
        raise WeightsImportError(f"{path}: a zip archive that is neither a PyTorch file nor a Keras .keras file")
    if head[8:9] == b"{" or path.suffix == ".safetensors":  # an 8-byte header length, then JSON
        arrays = read_safetensors(path, limits)
        return units_from_state_dict(arrays, f"{path} (safetensors, {len(arrays)} tensors)", ordered=False)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # a pickle's PROTO opcode
        return _torch_file(path, limits)  # refused there, with how to re-save it
    raise WeightsImportError(
        f"{path}: not a weights file this importer reads (PyTorch .pth / .pt / .bin, .safetensors, "
        "Keras .h5 / .weights.h5 / .keras, resnet-spec model files)"
    )


def _torch_file(path: Path, limits: ReadLimits) -> Source:
    payload = read_pth(path, limits)
    if isinstance(payload, Mapping) and payload.get("format") == TORCH_FORMAT:
        if payload.get("format_version") not in (1, 2):  # 2 adds the integrity record, checked by `load`
            raise WeightsImportError(
                f"{path}: resnet-spec PyTorch file format {payload.get('format_version')!r} is not supported"
            )
        arrays = state_dict_arrays(payload.get("state_dict"), f"{path} (state_dict)")
        units = units_from_state_dict(arrays, "").units
        return from_model_file(str(path), payload.get("spec"), payload.get("hash"), units, "PyTorch")
    arrays = state_dict_arrays(payload, str(path))
    return units_from_state_dict(arrays, f"{path} (PyTorch state dict, {len(arrays)} tensors)")


def _keras_archive(path: Path, limits: ReadLimits) -> Source:
    meta, named = read_keras_archive(path, limits)
    if meta is None:
        return named
    if not isinstance(meta, dict) or meta.get("format") not in (1, 2):  # 2 adds the integrity record
        raise WeightsImportError(
            f"{path}: unsupported resnet_spec.json (format {meta.get('format') if isinstance(meta, dict) else '?'})"
        )
    return from_model_file(str(path), meta.get("spec"), meta.get("hash"), named.units, "Keras")


# ---------------------------------------------------------------------- matching


def _match(arch: Architecture, source: Source, excluded: set[str]) -> ImportResult:
    target = target_of(arch, excluded)
    try:
        if isinstance(source, GraphSource):
            ops, output = target.ops()
            pairs = match_graph(skeleton(ops, output), skeleton(source.ops, source.output),
                                backbone=bool(arch.graph.outputs))  # fmt: skip
        else:
            pairs = match_names(target, source)
    except (Mismatch, StructureError) as problem:
        raise WeightsImportError(f"{source.description}: {problem}", reason=str(problem)) from None
    return _result(arch, target, source, pairs)


def _result(arch: Architecture, target: Target, source: Source, pairs: list[Any]) -> ImportResult:
    taken = {slot.name: unit for slot, unit in pairs}
    units = [id(unit) for _, unit in pairs]
    wanted = [slot.name for slot in target.slots if not slot.excluded]
    missing = [name for name in wanted if name not in taken]
    if (
        missing or len(set(units)) != len(units) or len(taken) != len(pairs)
    ):  # pragma: no cover - the matchers' own invariant
        raise WeightsImportError(
            f"{source.description}: internal match check failed ({', '.join(missing[:3]) or 'a unit used twice'})"
        )
    weights, matched, unused, replaced = {}, {}, list(getattr(source, "unused", [])), {}
    rank = {slot.name: i for i, slot in enumerate(target.slots)}
    for slot, unit in sorted(pairs, key=lambda pair: rank[pair[0].name]):  # the spec's graph order
        if slot.excluded:
            unused.extend(t.name for t in unit.tensors.values())
            replaced[slot.name] = {key: unit.neutral_shape(key) for key in unit.tensors}
            continue
        weights[slot.name] = neutral_weights(arch, slot, unit)
        matched[slot.name] = {key: unit.tensors[key].name for key in slot.shapes}
    new = [slot.name for slot in target.slots if slot.excluded]
    method: Literal["graph", "names"] = "graph" if isinstance(source, GraphSource) else "names"
    notes = _notes(pairs)
    if arch.graph.outputs:  # a backbone: what the source has beyond its last block has no place
        paired = {id(unit) for _, unit in pairs}
        beyond = [t.name for unit in source.units if id(unit) not in paired for t in unit.tensors.values()]
        unused.extend(beyond)
        if beyond:
            notes.append(f"the spec is a backbone (head.features): the source's {len(beyond)} tensors after its "
                         "blocks (its head) have no place in it and were left out")  # fmt: skip
    if method == "names":
        notes.append(NO_STRIDES)
    return ImportResult(weights, source.description, method, matched, new, unused, notes, replaced)


def _notes(pairs: list[Any]) -> list[str]:
    differ = [
        (slot.name, slot.node.epsilon, unit.epsilon)
        for slot, unit in pairs
        if isinstance(slot.node, g.BatchNorm) and unit.epsilon is not None
        and abs(unit.epsilon - slot.node.epsilon) > 1e-9 * max(unit.epsilon, slot.node.epsilon)
    ]  # fmt: skip
    if not differ:
        return []
    name, ours, theirs = differ[0]
    return [
        (
            f"batch-norm epsilon differs in {len(differ)} layers (e.g. {name}: the spec's {ours:g}, the source's "
            f"{theirs:g}); outputs will differ slightly unless the spec's norm.epsilon is changed"
        )
    ]


__all__ = ["Classifier", "ImportResult", "NamedSource", "import_weights", "read_source"]
