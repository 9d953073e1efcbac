"""The parity probe (:class:`resnet_spec.backends.WeightAccess`) for PyTorch models.

Semantics (the protocol's docstring, shared by every backend):

* loss = mean softmax cross-entropy of ``head.classifier``'s output (before a softmax output
  layer) + ``sum kernel_l2 * sum(w ** 2)`` over conv and dense kernels; a backbone
  (``head.features``, no classifier): the sum over its feature outputs of ``mean(f ** 2)`` (over
  the batch and every element) in place of the cross-entropy, so that every feature's gradient
  flows (a plain sum would give a batch norm output an exact zero gradient);
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

Streaming (:mod:`resnet_spec.parity.stream`): with a ``sink`` every result leaves as soon as it
exists and nothing is kept; with ``segments`` the forward keeps only the segment boundaries and
each segment is run again under autograd just before its backward pass, its batch norms
updating spare copies of their running statistics (the first forward already updated the real
ones). Each segment's parameters take their SGD step right after its backward (a
``torch.optim.SGD`` per segment), so only one segment's gradients exist at a time; ``spill``
keeps the momentum buffers on disk between steps. One segment and no spill is the plain probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_spec.backends import BackendError, ProbeResult
from resnet_spec.parity.stream import CollectingSink, ProbeSink

from . import layers as L
from .model import Step
from .model import walk as model_walk
from .weights import feature_orders, kernel_parameters, node_tensors, to_neutral, unwrap

if TYPE_CHECKING:
    from resnet_spec.parity.spill import Spill
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


def objective(arch: Architecture, values: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The probe's loss before the L2 terms: the classifier's cross-entropy, or a backbone's sum
    over its feature outputs of ``mean(f ** 2)``."""
    if arch.graph.outputs:
        return torch.stack([at_least_float32(values[n]).square().mean() for n in arch.graph.outputs.values()]).sum()
    return F.cross_entropy(at_least_float32(values[LOGITS]), target)


def objective_nodes(arch: Architecture) -> frozenset[str]:
    """The nodes :func:`objective` reads (kept by the walk)."""
    return frozenset(arch.graph.outputs.values()) if arch.graph.outputs else frozenset({LOGITS})


def _inputs(net: nn.Module, images: np.ndarray) -> torch.Tensor:
    param = next(net.parameters(), None)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    return x


def numpy_copy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy in float32, or float64 for a float64 tensor (float64 parity is never rounded)."""
    dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return tensor.detach().to("cpu", dtype).contiguous().numpy().copy()


class Neutral:
    """Per-node conversion to the neutral layout, with the flatten orders computed once (a
    probe converts every node, and ResNet-1202 has 4,208)."""

    def __init__(self, arch: Architecture) -> None:
        self.arch, self.orders = arch, feature_orders(arch)

    def output(self, name: str, value: torch.Tensor) -> np.ndarray:
        """NCHW maps as NHWC; vectors after a flatten in the graph's (h, w, c) order."""
        value = value.detach()
        array = numpy_copy(value.permute(0, 2, 3, 1) if value.dim() == 4 else value)
        order = self.orders.get(name)
        if order is not None and array.ndim == 2:
            neutral = np.empty_like(array)
            neutral[:, order] = array
            array = neutral
        return array

    def tensors(self, name: str, entry: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        node = self.arch.graph[name]
        order = self.orders.get(node.inputs[0]) if node.inputs else None
        return {key: np.ascontiguousarray(to_neutral(node, key, numpy_copy(t), order)) for key, t in entry.items()}


def walk(net: nn.Module, steps: Sequence[Step], values: dict[str, torch.Tensor], *,
         emit: Callable[[str, torch.Tensor], None] | None = None, keep: frozenset[str] = frozenset(),
         leaf: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Run ``steps`` (a slice of the model's node-by-node walk, ``ResNet._steps``) on ``values``:
    the model's own walk (:func:`.model.walk`), which ``forward`` runs too."""
    return model_walk(net, steps, values, emit=emit, keep=keep, leaf=leaf)


def train_probe(model: nn.Module, arch: Architecture, batches: list[tuple[np.ndarray, np.ndarray]], *, steps: int,
                learning_rate: float, momentum: float, weight_decay: float, sink: ProbeSink | None = None,
                segments: Sequence[Sequence[str]] | None = None, spill: Spill | None = None) -> ProbeResult:  # fmt: skip
    if not batches:
        raise BackendError("train_probe needs at least one batch")
    if steps < 0:
        raise BackendError(f"steps must be >= 0, got {steps}")
    net = unwrap(model)
    if not hasattr(net, "capture") or not hasattr(net, "_steps"):
        raise BackendError(f"expected a model built by the torch backend, got {type(net).__name__}")
    if not arch.graph.outputs and not any(node.name == LOGITS for node in arch.graph):  # pragma: no cover
        raise BackendError(f"the graph has no '{LOGITS}' node")
    if arch.graph.outputs and segments and len(segments) > 1:
        raise BackendError("a backbone's probe runs in one segment (its loss reads outputs across segments)")
    collecting = CollectingSink() if sink is None else None
    probe = _Probe(net, arch, sink or collecting, segments, spill)  # type: ignore[arg-type]
    settings = {"lr": learning_rate, "momentum": momentum, "weight_decay": weight_decay}
    losses = probe.run(batches, steps, settings)
    result = collecting.result if collecting is not None else ProbeResult({}, {}, {}, {}, [])
    result.losses = losses
    return result


class _Probe:
    """One probe run: the segments, their parameters and optimizers."""

    def __init__(self, net: nn.Module, arch: Architecture, sink: ProbeSink, segments: Sequence[Sequence[str]] | None,
                 spill: Spill | None) -> None:  # fmt: skip
        self.net, self.arch, self.sink, self.spill = net, arch, sink, spill
        self.neutral = Neutral(arch)
        self.tensors = node_tensors(net, arch)
        steps: list[Step] = list(net._steps)  # type: ignore[arg-type]
        names = [step[0] for step in steps]
        groups = [list(s) for s in segments] if segments else [names]
        if [n for s in groups for n in s] != names:
            raise BackendError("probe segments must list every node after the input, in graph order, once")
        index = {name: i for i, name in enumerate(names)}
        self.steps = [steps[index[s[0]] : index[s[-1]] + 1] for s in groups]
        self.input_name = str(net.input_name)
        self.inputs: list[str] = [self.input_name] + [s[-1] for s in groups[:-1]]
        members = [set(s) for s in groups]
        every_kernel = kernel_parameters(net, arch)
        self.kernel_ids = {id(weight) for _, weight in every_kernel}
        self.kernels = [[(node, w) for node, w in every_kernel if node.name in m] for m in members]
        self.trainable = [[(name, key, t) for name in s for key, t in self.tensors.get(name, {}).items()
                           if isinstance(t, nn.Parameter) and t.requires_grad] for s in groups]  # fmt: skip
        self.norms = [[m for name in s if isinstance(m := net.get_submodule(name), L.BatchNorm)] for s in groups]

    def optimizers(self, settings: dict[str, float]) -> list[torch.optim.SGD | None]:
        out: list[torch.optim.SGD | None] = []
        for params in self.trainable:
            groups: list[dict[str, Any]] = [
                {
                    "params": [t for _, _, t in params if id(t) in self.kernel_ids],
                    "weight_decay": settings["weight_decay"],
                },
                {"params": [t for _, _, t in params if id(t) not in self.kernel_ids], "weight_decay": 0.0},
            ]
            groups = [grp for grp in groups if grp["params"]]
            out.append(torch.optim.SGD(groups, lr=settings["lr"], momentum=settings["momentum"]) if groups else None)
        return out

    def run(self, batches: list[tuple[np.ndarray, np.ndarray]], steps: int, settings: dict[str, float]) -> list[float]:
        optimizers = self.optimizers(settings)
        losses: list[float] = []
        with strict_numerics(), norms_train_dropout_off(self.net):
            for step in range(max(steps, 1)):
                images, labels = batches[step % len(batches)]
                x = _inputs(self.net, images)
                target = torch.as_tensor(np.asarray(labels, np.int64), device=x.device)
                loss = self.step(x, target, first=step == 0, update=step < steps, optimizers=optimizers,
                                 keep_buffers=step + 1 < steps)  # fmt: skip
                if step >= steps:
                    break
                losses.append(loss)
        for name, entry in self.tensors.items():
            self.sink.weights_after(name, self.neutral.tensors(name, entry))
        return losses

    def step(self, x: torch.Tensor, target: torch.Tensor, *, first: bool, update: bool,
             optimizers: list[torch.optim.SGD | None], keep_buffers: bool) -> float:  # fmt: skip
        emit = (lambda name, value: self.sink.output(name, self.neutral.output(name, value))) if first else None
        if emit is not None:
            emit(self.input_name, x)
        single = len(self.steps) == 1
        boundaries: dict[str, torch.Tensor] = {self.inputs[0]: x}
        with torch.set_grad_enabled(single):
            values = walk(self.net, self.steps[0] if single else [s for seg in self.steps for s in seg],
                          {self.inputs[0]: x}, emit=_keeping(emit, boundaries, set(self.inputs[1:])),
                          keep=objective_nodes(self.arch))  # fmt: skip
        if first:
            self.emit_stats()
        with torch.set_grad_enabled(single):
            loss_tensor = objective(self.arch, values, target)
            penalty = l2_penalty(self.net, self.arch)
            if penalty is not None:
                loss_tensor = loss_tensor + penalty
        loss = float(loss_tensor.detach())
        del values
        if single:
            loss_tensor.backward()
            self.finish(0, first, update, optimizers, keep_buffers)
            return loss
        upstream: torch.Tensor | None = None
        for k in reversed(range(len(self.steps))):
            upstream = self.backward(k, boundaries.pop(self.inputs[k]), target, upstream)
            self.finish(k, first, update, optimizers, keep_buffers)
        return loss

    def backward(
        self, k: int, start: torch.Tensor, target: torch.Tensor, upstream: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Segment k's forward again under autograd (spare running statistics), then its backward
        from ``upstream`` (d loss / d its output; the loss itself for the last segment). Returns
        d loss / d its input."""
        leaf = start.detach().requires_grad_(k > 0)
        spare = [(m, m.running_mean, m.running_var, m.num_batches_tracked) for m in self.norms[k]]
        for module, mean, var, count in spare:
            module.running_mean, module.running_var, module.num_batches_tracked = (
                None if t is None else t.clone() for t in (mean, var, count))  # fmt: skip
        try:
            with torch.enable_grad():
                last = k == len(self.steps) - 1
                values = walk(self.net, self.steps[k], {self.inputs[k]: leaf}, leaf=leaf, keep=frozenset({LOGITS}))
                outputs = (
                    [F.cross_entropy(at_least_float32(values[LOGITS]), target)]
                    if last
                    else [values[self.steps[k][-1][0]]]
                )
                grads = [None] if last else [upstream]
                terms = [
                    node.kernel_l2 * at_least_float32(w).square().sum() for node, w in self.kernels[k] if node.kernel_l2
                ]
                if terms:
                    outputs.append(torch.stack(terms).sum())
                    grads.append(None)
                del values
        finally:
            for module, mean, var, count in spare:
                module.running_mean, module.running_var, module.num_batches_tracked = mean, var, count
        torch.autograd.backward(outputs, grads)  # type: ignore[arg-type]
        return leaf.grad if k > 0 else None

    def finish(
        self, k: int, first: bool, update: bool, optimizers: list[torch.optim.SGD | None], keep_buffers: bool
    ) -> None:
        """Segment k's gradients are complete: report them (first step), take its SGD step."""
        if first:
            grads: dict[str, dict[str, torch.Tensor]] = {}
            for name, key, t in self.trainable[k]:
                grads.setdefault(name, {})[key] = t.grad if t.grad is not None else torch.zeros_like(t)
            for name, entry in grads.items():
                self.sink.gradients(name, self.neutral.tensors(name, entry))
        optimizer = optimizers[k]
        if update and optimizer is not None:
            self.restore_buffers(k, optimizer)
            optimizer.step()
            self.store_buffers(k, optimizer, keep_buffers)
        for _, _, t in self.trainable[k]:
            t.grad = None

    def restore_buffers(self, k: int, optimizer: torch.optim.SGD) -> None:
        if self.spill is None:
            return
        for i, (_, _, t) in enumerate(self.trainable[k]):
            saved = self.spill.take(f"momentum/{k}/{i}")
            if saved is not None:
                optimizer.state[t]["momentum_buffer"] = torch.from_numpy(saved).to(t.device)

    def store_buffers(self, k: int, optimizer: torch.optim.SGD, keep: bool) -> None:
        """With a spill, the momentum buffers leave memory until the next step (dropped after the last)."""
        if self.spill is None:
            return
        for i, (_, _, t) in enumerate(self.trainable[k]):
            buffer = optimizer.state.get(t, {}).pop("momentum_buffer", None)
            if buffer is not None and keep:
                self.spill.put(f"momentum/{k}/{i}", buffer.detach().cpu().numpy())

    def emit_stats(self) -> None:
        for name, entry in self.tensors.items():
            if "moving_mean" in entry:
                self.sink.stats(
                    name, self.neutral.tensors(name, {k: entry[k] for k in ("moving_mean", "moving_variance")})
                )


def _keeping(emit: Callable[[str, torch.Tensor], None] | None, boundaries: dict[str, torch.Tensor],
             wanted: set[str]) -> Callable[[str, torch.Tensor], None] | None:  # fmt: skip
    """An ``emit`` that also keeps a copy of each segment boundary (a later in-place module may
    overwrite the original)."""
    if not wanted:
        return emit

    def both(name: str, value: torch.Tensor) -> None:
        if emit is not None:
            emit(name, value)
        if name in wanted:
            boundaries[name] = value.detach().clone()

    return both
