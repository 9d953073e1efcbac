"""Weights in the neutral layout of :mod:`resnet_spec.weights`, matched by graph node name.

PyTorch stores the same numbers in other layouts:

* conv kernels are (out, in / groups, kh, kw) (OIHW); neutral is (kh, kw, in / groups, out)
  (HWIO): ``w.permute(2, 3, 1, 0)`` one way, ``k.transpose(3, 2, 0, 1)`` the other. Grouped
  kernels the same way (the groups are stacked along ``out`` in both);
* ``Linear`` weights are (out, in); neutral kernels are (in, out);
* a vector made by flattening an (H, W, C) map is in (c, h, w) order here (NCHW) and in
  (h, w, c) order in the graph. Every weight indexed by such a vector's features is permuted:
  the rows of a dense kernel reading it, and the gamma / beta / statistics of a batch norm over
  it. The order travels through element-wise nodes (activation, dropout, norm) between the
  flatten and the dense layer (:func:`feature_orders`).

Batch norms: ``weight`` / ``bias`` are ``gamma`` / ``beta`` when learned (``center`` /
``scale``: an unlearned one is absent, as in the neutral dict), ``running_mean`` /
``running_var`` are ``moving_mean`` / ``moving_variance``. ``num_batches_tracked`` is PyTorch
bookkeeping with no neutral counterpart; ``set_weights`` leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from resnet_spec import graph as g
from resnet_spec.backends import BackendError
from resnet_spec.weights import Weights, shapes

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture

# neutral key -> attribute of the PyTorch module
_CONV = {"kernel": "weight", "bias": "bias"}
_NORM = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def unwrap(model: nn.Module) -> nn.Module:
    """The compiled network behind ``torch.compile`` (``_orig_mod``) and ``DistributedDataParallel``
    / ``DataParallel`` (``module``) wrappers, in any nesting."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner


def feature_orders(arch: Architecture) -> dict[str, np.ndarray]:
    """For every vector-valued node whose features come from flattening a map with more than one
    cell: ``perm`` with ``torch_vector = neutral_vector[perm]`` (feature j of the NCHW flatten is
    feature ``perm[j]`` of the graph's (h, w, c) flatten). Nodes not listed are in the same order
    in both layouts."""
    orders: dict[str, np.ndarray] = {}
    for node in arch.graph:
        if isinstance(node, g.Flatten):
            shape = arch.shape_of(node.inputs[0])
            if len(shape) == 3 and shape[0] * shape[1] > 1:
                h, w, c = shape
                orders[node.name] = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        elif (
            isinstance(node, (g.Activation, g.Dropout, g.DropPath, g.BatchNorm, g.Add, g.Scale))
            and node.inputs[0] in orders
            and len(arch.shape_of(node.name)) == 1
        ):  # element-wise on its first input's features (Add / Scale of vectors: both in one order)
            orders[node.name] = orders[node.inputs[0]]
    return orders


def _module(net: nn.Module, name: str) -> nn.Module:
    try:
        return net.get_submodule(name)
    except AttributeError:
        raise BackendError(f"the model has no submodule '{name}': it was not built from this architecture") from None


def node_tensors(model: nn.Module, arch: Architecture) -> dict[str, dict[str, torch.Tensor]]:
    """``{node: {neutral key: the module's own tensor}}`` for every weight node, checked against
    the architecture (a missing module or tensor, an extra learned one, or an element count that
    differs means the model was not built from this architecture)."""
    net = unwrap(model)
    expected = shapes(arch)
    found: dict[str, dict[str, torch.Tensor]] = {}
    for name, entry in expected.items():
        node = arch.graph[name]
        module = _module(net, name)
        names = _NORM if isinstance(node, g.BatchNorm) else _CONV
        tensors: dict[str, torch.Tensor] = {}
        for key, attr in names.items():
            tensor = getattr(module, attr, None)
            if tensor is None:
                continue
            if key not in entry:
                raise BackendError(f"{name}.{attr} exists in the model but the architecture has no '{key}' there")
            tensors[key] = tensor
        missing = sorted(set(entry) - set(tensors))
        if missing:
            raise BackendError(f"{name}: the model lacks {', '.join(missing)} (not built from this architecture)")
        for key, tensor in tensors.items():
            if tensor.numel() != int(np.prod(entry[key])):
                raise BackendError(f"{name}.{key}: the model holds {tuple(tensor.shape)}, the architecture {entry[key]}")
        found[name] = tensors
    return found


def to_neutral(node: g.Node, key: str, value: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """One tensor (as a NumPy array in PyTorch's layout) in the neutral layout."""
    if isinstance(node, g.Conv2D) and key == "kernel":
        return value.transpose(2, 3, 1, 0)
    if isinstance(node, g.Dense) and key == "kernel":
        kernel = value.T
        if order is not None:
            out = np.empty_like(kernel)
            out[order] = kernel
            kernel = out
        return kernel
    if isinstance(node, g.BatchNorm) and order is not None:
        out = np.empty_like(value)
        out[order] = value
        return out
    return value


def from_neutral(node: g.Node, key: str, value: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """The inverse of :func:`to_neutral`."""
    if isinstance(node, g.Conv2D) and key == "kernel":
        return value.transpose(3, 2, 0, 1)
    if isinstance(node, g.Dense) and key == "kernel":
        return (value[order] if order is not None else value).T
    if isinstance(node, g.BatchNorm) and order is not None:
        return value[order]
    return value


def _input_order(arch: Architecture, node: g.Node, orders: dict[str, np.ndarray]) -> np.ndarray | None:
    return orders.get(node.inputs[0]) if node.inputs else None


def tensors_to_neutral(arch: Architecture, tensors: Mapping[str, Mapping[str, torch.Tensor]]) -> Weights:
    """Neutral arrays for ``{node: {key: tensor}}`` in PyTorch's layout (weights, gradients or
    statistics alike): float64 for a float64 model, float32 otherwise."""
    orders = feature_orders(arch)
    out: Weights = {}
    for name, entry in tensors.items():
        node = arch.graph[name]
        order = _input_order(arch, node, orders)
        out[name] = {
            key: np.ascontiguousarray(to_neutral(node, key, _numpy(tensor), order))
            for key, tensor in entry.items()
        }
    return out


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A copy (``.numpy()`` of a CPU tensor shares its memory, which later steps change), in
    float32 or, for a float64 model, float64: float64 parity must not be rounded to float32."""
    dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return tensor.detach().to("cpu", dtype).contiguous().numpy().copy()


def get_weights(model: nn.Module, arch: Architecture) -> Weights:
    return tensors_to_neutral(arch, node_tensors(model, arch))


def set_weights(model: nn.Module, arch: Architecture, weights: Mapping[str, Mapping[str, Any]]) -> None:
    """Copy every weight into the model (same device, dtype and memory format as before); refuse
    missing, unknown or misshapen entries before changing anything."""
    tensors = node_tensors(model, arch)
    expected = shapes(arch)
    unknown = sorted(set(weights) - set(tensors))
    if unknown:
        raise BackendError(f"weights given for nodes the architecture has no weights for: {', '.join(unknown[:5])}")
    orders = feature_orders(arch)
    plan: list[tuple[torch.Tensor, np.ndarray]] = []
    for name, entry in tensors.items():
        given = weights.get(name)
        if given is None:
            raise BackendError(f"no weights given for '{name}' (every weight of the model must be given)")
        if set(given) != set(entry):
            raise BackendError(f"{name}: weights given for {sorted(given)}, the model holds {sorted(entry)}")
        node = arch.graph[name]
        order = _input_order(arch, node, orders)
        for key, tensor in entry.items():
            value = np.asarray(given[key])
            if value.shape != tuple(expected[name][key]):
                raise BackendError(f"{name}.{key}: given shape {value.shape}, the architecture's {expected[name][key]}")
            native = np.ascontiguousarray(from_neutral(node, key, value, order))
            if native.shape != tuple(tensor.shape):  # pragma: no cover - node_tensors checked the sizes
                raise BackendError(f"{name}.{key}: converted shape {native.shape}, the model's {tuple(tensor.shape)}")
            plan.append((tensor, native))
    with torch.no_grad():
        for tensor, native in plan:
            tensor.copy_(torch.from_numpy(native))


def kernel_parameters(model: nn.Module, arch: Architecture) -> list[tuple[g.Conv2D | g.Dense, torch.Tensor]]:
    """(node, kernel) for every conv and dense node: what weight decay "kernels" and ``kernel_l2``
    apply to."""
    net = unwrap(model)
    out: list[tuple[g.Conv2D | g.Dense, torch.Tensor]] = []
    for node in arch.graph:
        if isinstance(node, (g.Conv2D, g.Dense)):
            weight = _module(net, node.name).weight
            assert isinstance(weight, torch.Tensor)
            out.append((node, weight))
    return out


def outputs_to_neutral(arch: Architecture, values: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Node outputs (NCHW maps, vectors in the NCHW flatten order) as NHWC maps and vectors in
    the graph's (h, w, c) order (float32, float64 for a float64 model)."""
    orders = feature_orders(arch)
    out: dict[str, np.ndarray] = {}
    for node in arch.graph:
        if node.name not in values:
            continue
        value = values[node.name].detach()
        if value.dim() == 4:
            value = value.permute(0, 2, 3, 1)
        array = _numpy(value)
        order = orders.get(node.name)
        if order is not None and array.ndim == 2:
            neutral = np.empty_like(array)
            neutral[:, order] = array
            array = neutral
        out[node.name] = array
    return out
