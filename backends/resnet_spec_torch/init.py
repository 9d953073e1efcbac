"""Kernel initializers by name (``resnet_spec.graph.InitializerName``), seedable through
``torch.manual_seed``.

The names mean the same thing in both backends; the Keras ones are reproduced exactly here:
Keras' truncated normals cut at two standard deviations and divide the standard deviation by
0.87962566103423978 (the std of a unit normal truncated to [-2, 2]) so the result has the
nominal std. Fans follow both frameworks' rule: fan_in = kh * kw * in / groups, fan_out =
kh * kw * out (dense: in, out).
"""

from __future__ import annotations

import math

import torch
from torch import nn

TRUNCATED_STD = 0.87962566103423978


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    return nn.init._calculate_fan_in_and_fan_out(weight)


def _truncated(weight: torch.Tensor, variance: float) -> None:
    std = math.sqrt(variance) / TRUNCATED_STD
    nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)


def _uniform(weight: torch.Tensor, variance: float) -> None:
    limit = math.sqrt(3.0 * variance)
    nn.init.uniform_(weight, -limit, limit)


def he_normal(w: torch.Tensor) -> None:
    _truncated(w, 2.0 / _fans(w)[0])


def he_uniform(w: torch.Tensor) -> None:
    _uniform(w, 2.0 / _fans(w)[0])


def kaiming_normal(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")


def kaiming_normal_fan_out(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")  # torchvision's ResNet


def glorot_uniform(w: torch.Tensor) -> None:
    _uniform(w, 2.0 / sum(_fans(w)))


def glorot_normal(w: torch.Tensor) -> None:
    _truncated(w, 2.0 / sum(_fans(w)))


def lecun_normal(w: torch.Tensor) -> None:
    _truncated(w, 1.0 / _fans(w)[0])


def zeros(w: torch.Tensor) -> None:
    nn.init.zeros_(w)


KERNEL_INITIALIZERS = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": kaiming_normal,
    "kaiming_normal_fan_out": kaiming_normal_fan_out,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
}


def initialize(module: nn.Conv2d | nn.Linear, name: str) -> None:
    """Initialize a conv / dense module in place (the model's modules are constructed without
    PyTorch's default initialization: see ``layers.DeferredInit``).

    ``torch_default`` is PyTorch's own ``reset_parameters`` (kaiming_uniform(a=sqrt(5)) and a
    non-zero bias), drawn where the constructor would have drawn it, so a seeded build consumes
    the random stream as hand-written modules constructed in graph order do. Every other name
    starts the bias at zero, as Keras does."""
    if name == "torch_default":
        module.reset_parameters()
        return
    KERNEL_INITIALIZERS[name](module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
