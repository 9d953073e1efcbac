"""Looking inside a compiled model: parameter counts, a summary text, every node's output."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from resnet_spec import graph as g

from .model import ResNet

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture


def unwrap(model: nn.Module) -> nn.Module:
    """The module behind ``torch.compile`` (an ``OptimizedModule`` keeps it as ``_orig_mod``)."""
    return getattr(model, "_orig_mod", model)


def _statistics(model: nn.Module) -> int:
    """Saved buffers (norm running mean and variance), without the step counter: that is a
    bookkeeping integer, not a statistic, and neither the analysis nor Keras counts it."""
    total = 0
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None and name != "num_batches_tracked" and name not in module._non_persistent_buffers_set:
                total += buf.numel()
    return total


def count_params(model: nn.Module) -> tuple[int, int]:
    model = unwrap(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen + _statistics(model)


def summary(model: nn.Module) -> str:
    """The module tree, one line per module: name, what it is, parameters under it."""
    model = unwrap(model)
    lines = []
    width = max(len(name) for name, _ in model.named_modules()) + 2
    for name, module in model.named_modules():
        if not name:
            continue
        label = ("  " * name.count(".") + name.rsplit(".", 1)[-1]).ljust(width)
        count = sum(p.numel() for p in module.parameters())
        extra = module.extra_repr()
        lines.append(f"{label} {count:>12,}  {type(module).__name__}" + (f"({extra})" if extra else ""))
    trainable, non_trainable = count_params(model)
    header = f"{'name'.ljust(width)} {'params':>12}  module ({type(model).__name__}, PyTorch, input NCHW)"
    rule = "-" * len(header)
    footer = [
        f"Total params: {trainable + non_trainable:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,} (norm running statistics and frozen parameters)",
    ]
    return "\n".join([header, rule, *lines, rule, *footer])


def node_outputs(model: nn.Module, arch: Architecture, images: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs of every node for NHWC ``images``, as NHWC maps and (N, C) vectors.

    Flatten outputs are reordered to (h, w, c), the order an NHWC framework flattens in, so they
    compare one to one (the dense layer after them differs by the matching row permutation)."""
    net = unwrap(model)
    if not isinstance(net, ResNet):
        raise TypeError(f"expected a model built by the torch backend, got {type(net).__name__}")
    param = next(net.parameters(), None)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    modes = [(m, m.training) for m in net.modules()]  # restored one by one: some may be frozen in eval
    net.eval()
    try:
        with torch.inference_mode():
            values = net.capture(x)
    finally:
        for module, training in modes:
            module.training = training
    out: dict[str, np.ndarray] = {}
    for node in arch.graph:
        value = values[node.name]
        if isinstance(node, g.Flatten) and values[node.inputs[0]].dim() == 4:
            value = values[node.inputs[0]].permute(0, 2, 3, 1).reshape(value.shape[0], -1)
        elif value.dim() == 4:
            value = value.permute(0, 2, 3, 1)
        out[node.name] = value.float().cpu().contiguous().numpy()
    return out
