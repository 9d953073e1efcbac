"""PyTorch ``state_dict`` tensors (already NumPy arrays, already checked) -> units.

A module's tensors share its name: ``layer1.0.bn1.weight``, ``.bias``, ``.running_mean``,
``.running_var`` (and ``.num_batches_tracked``, dropped) make one batch-norm unit; a module with
a 4-D ``weight`` is a convolution, one with a 2-D ``weight`` a dense layer. Anything else
(a 1-D weight without running statistics, a tensor of another name) is a layer a spec has no
node for, and is refused by name rather than skipped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .safety import WeightsImportError, bookkeeping
from .source import NamedSource, SourceTensor, Unit, split_name

_NORM = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_LAYER = {"weight": "kernel", "bias": "bias"}


def units_from_state_dict(tensors: Mapping[str, np.ndarray], description: str, ordered: bool = True) -> NamedSource:
    """``ordered``: the mapping keeps the order its modules were registered in (``torch.save`` of
    a state dict does; a safetensors file sorts its names)."""
    modules: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    ignored: list[str] = []
    for name, value in tensors.items():
        if bookkeeping(name):
            ignored.append(name)
            continue
        module, _, attribute = name.rpartition(".")
        if attribute not in _NORM:
            raise WeightsImportError(
                f"{name}: not a weight a spec can hold (expected module tensors named weight, bias, running_mean, running_var)"
            )
        modules.setdefault(module, {})[attribute] = (name, value)
    units = [_unit(module, found) for module, found in modules.items()]
    if ordered:
        for index, unit in enumerate(units):
            unit.order = index
    return NamedSource(description, units, ignored)


def _unit(module: str, found: dict[str, tuple[str, np.ndarray]]) -> Unit:
    path = split_name(module, ".")
    if "running_mean" in found or "running_var" in found:
        missing = {"running_mean", "running_var"} - set(found)
        if missing:
            raise WeightsImportError(f"{module}: a batch norm without {', '.join(sorted(missing))}")
        tensors = {_NORM[a]: SourceTensor(n, v) for a, (n, v) in found.items()}
        sizes = {v.shape for _, v in found.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise WeightsImportError(
                f"{module}: a batch norm's tensors must be vectors of one length, found {sorted(sizes)}"
            )
        return Unit("norm", module, path, tensors, "torch")
    if "weight" not in found:
        raise WeightsImportError(f"{found['bias'][0]}: a bias without a weight")
    weight = found["weight"][1]
    if weight.ndim not in (2, 4):
        raise WeightsImportError(
            f"{found['weight'][0]}: a {weight.ndim}-D weight {tuple(weight.shape)} without running statistics "
            "(a spec holds convolutions, dense layers and batch norms with running statistics)"
        )
    tensors = {_LAYER[a]: SourceTensor(n, v) for a, (n, v) in found.items()}
    bias = tensors.get("bias")
    if bias is not None and bias.value.shape != (weight.shape[0],):
        raise WeightsImportError(
            f"{bias.name}: shape {tuple(bias.value.shape)}, the weight has {weight.shape[0]} outputs"
        )
    return Unit("conv" if weight.ndim == 4 else "dense", module, path, tensors, "torch")
