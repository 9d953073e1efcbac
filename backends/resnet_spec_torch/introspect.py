"""Looking inside a compiled model: parameter counts, a summary text, every node's output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

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

    Vectors made by flattening a map with more than one cell are reordered from PyTorch's
    (c, h, w) to the graph's (h, w, c) order, the flatten's own output and every element-wise
    node after it alike (norm, dropout, activation): :func:`.weights.outputs_to_neutral`."""
    return dict(iter_node_outputs(model, arch, images))


def iter_node_outputs(model: nn.Module, arch: Architecture, images: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """:func:`node_outputs` one node at a time, in graph order (the input first): the model's
    own walk, each value dropped after its last reader, so a deep network's outputs never all
    exist at once. Each array is a copy, made before the next module runs (modules that work
    in place overwrite their input). The model's modes are restored when the walk ends or is
    abandoned.

    The NCHW input is contiguous, as ``forward`` is usually given it (a permuted NHWC view
    would be channels-last memory, which convolutions compute differently), so the outputs
    equal ``forward``'s and forward hooks' on the same batch exactly (tests/test_torch_native.py)."""
    from .probe import Neutral, walk

    net = unwrap(model)
    if not isinstance(net, ResNet):
        raise TypeError(f"expected a model built by the torch backend, got {type(net).__name__}")
    param = next(net.parameters(), None)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    neutral = Neutral(arch)
    modes = [(m, m.training) for m in net.modules()]  # restored one by one: some may be frozen in eval
    net.eval()
    try:
        yield net.input_name, neutral.output(net.input_name, x)
        values = {net.input_name: x}
        for step in net._steps:
            with torch.inference_mode():  # entered per node: the caller runs between nodes
                walk(net, [step], values)
                output = neutral.output(step[0], values[step[0]])
            yield step[0], output
    finally:
        for module, training in modes:
            module.training = training
