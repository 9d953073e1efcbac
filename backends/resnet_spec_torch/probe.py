"""The parity probe (:class:`resnet_spec.backends.WeightAccess`) for PyTorch models.

Semantics (the protocol's docstring, shared by every backend):

* loss = mean softmax cross-entropy of ``head.classifier``'s output (before a softmax output
  layer) + ``sum kernel_l2 * sum(w ** 2)`` over conv and dense kernels;
* batch norms in training mode (batch statistics, running statistics updated), dropout and
  drop-path the identity (those modules in eval mode);
* ``b = momentum * b + g + weight_decay * w`` (kernels only), ``w -= learning_rate * b``:
  ``torch.optim.SGD`` with two parameter groups (kernels with ``weight_decay``, the rest
  without) computes exactly this (its first step sets ``b = g``, the same as ``b = 0`` before);
* step k uses ``batches[k % len(batches)]``.

Step 0's forward is the reported train-mode forward (outputs, statistics after it, gradients,
``losses[0]``), so after ``steps`` steps the running statistics have seen ``steps`` batches.
With ``steps == 0`` that forward still runs and ``weights_after`` holds its statistics (as the
Keras probe does). Numerics are strict while the probe runs (no TF32 on a GPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_spec.backends import BackendError, ProbeResult

from . import layers as L
from .weights import get_weights, kernel_parameters, node_tensors, outputs_to_neutral, tensors_to_neutral, unwrap

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture

LOGITS = "head.classifier"


@contextlib.contextmanager
def strict_numerics() -> Iterator[None]:
    """Full float32 convolutions and matmuls (no TF32) while inside; restored afterwards."""
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


@contextlib.contextmanager
def norms_train_dropout_off(net: nn.Module) -> Iterator[None]:
    """Training mode with dropout and drop-path as the identity; every module's mode restored
    afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    net.train()
    for module in net.modules():
        if isinstance(module, (nn.modules.dropout._DropoutNd, L.DropPath)):
            module.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision tensors; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def l2_penalty(model: nn.Module, arch: Architecture) -> torch.Tensor | None:
    """``sum kernel_l2 * sum(w ** 2)`` over the kernels that have a ``kernel_l2`` (None when none do)."""
    terms = [node.kernel_l2 * at_least_float32(weight).square().sum()
             for node, weight in kernel_parameters(model, arch) if node.kernel_l2]  # fmt: skip
    return torch.stack(terms).sum() if terms else None


def _inputs(net: nn.Module, images: np.ndarray) -> torch.Tensor:
    param = next(net.parameters(), None)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    return x


def train_probe(model: nn.Module, arch: Architecture, batches: list[tuple[np.ndarray, np.ndarray]], *, steps: int,
                learning_rate: float, momentum: float, weight_decay: float) -> ProbeResult:  # fmt: skip
    if not batches:
        raise BackendError("train_probe needs at least one batch")
    if steps < 0:
        raise BackendError(f"steps must be >= 0, got {steps}")
    net = unwrap(model)
    if not hasattr(net, "capture"):
        raise BackendError(f"expected a model built by the torch backend, got {type(net).__name__}")
    if not any(node.name == LOGITS for node in arch.graph):  # pragma: no cover - every graph has one
        raise BackendError(f"the graph has no '{LOGITS}' node")
    tensors = node_tensors(net, arch)
    kernels = {id(weight) for _, weight in kernel_parameters(net, arch)}
    trainable = [(name, key, t) for name, entry in tensors.items() for key, t in entry.items()
                 if isinstance(t, nn.Parameter) and t.requires_grad]  # fmt: skip
    groups: list[dict[str, Any]] = [
        {"params": [t for _, _, t in trainable if id(t) in kernels], "weight_decay": weight_decay},
        {"params": [t for _, _, t in trainable if id(t) not in kernels], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.SGD([grp for grp in groups if grp["params"]], lr=learning_rate, momentum=momentum)
    result = ProbeResult({}, {}, {}, {}, [])
    with strict_numerics(), norms_train_dropout_off(net):
        for step in range(max(steps, 1)):
            images, labels = batches[step % len(batches)]
            x = _inputs(net, images)
            target = torch.as_tensor(np.asarray(labels, np.int64), device=x.device)
            optimizer.zero_grad(set_to_none=True)
            values = net.capture(x)  # type: ignore[operator]
            loss = F.cross_entropy(at_least_float32(values[LOGITS]), target)
            penalty = l2_penalty(net, arch)
            if penalty is not None:
                loss = loss + penalty
            loss.backward()
            if step == 0:
                result.train_outputs = outputs_to_neutral(arch, values)
                stats = {name: {k: entry[k] for k in ("moving_mean", "moving_variance")}
                         for name, entry in tensors.items() if "moving_mean" in entry}  # fmt: skip
                result.stats_after_forward = tensors_to_neutral(arch, stats)
                grads: dict[str, dict[str, torch.Tensor]] = {}
                for name, key, t in trainable:
                    grads.setdefault(name, {})[key] = t.grad if t.grad is not None else torch.zeros_like(t)
                result.gradients = tensors_to_neutral(arch, grads)
            del values
            if step >= steps:
                break
            result.losses.append(float(loss.detach()))
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    result.weights_after = get_weights(net, arch)
    return result
