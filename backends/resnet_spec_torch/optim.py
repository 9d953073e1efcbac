"""The trainer contract's optimizers: PyTorch's own, with weight decay only on the parameters
``weight_decay_applies_to`` names (two parameter groups).

* ``sgd``: ``torch.optim.SGD``: ``g' = g + wd * w``; ``b = m * b + g'``; ``w -= lr * b``
  (Nesterov: ``w -= lr * (g' + m * b)``; no buffer at momentum 0);
* ``adam``: ``torch.optim.Adam`` (``weight_decay * w`` added to the gradient);
* ``adamw``: ``torch.optim.AdamW`` (decoupled: ``w *= 1 - lr * wd`` before the Adam step).

``kernels``: conv and dense kernels (the ``weight`` of every conv / dense node); ``all``: every
trainable parameter. The learning rate is set on every group before each step
(:func:`set_learning_rate`), from ``resnet_spec.training.schedule``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnet_spec.spec import Optimizer as OptimizerSettings

from .weights import kernel_parameters

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture


def parameter_groups(model: nn.Module, arch: Architecture, weight_decay: float, applies_to: str) -> list[dict[str, Any]]:
    kernels = {id(weight) for _, weight in kernel_parameters(model, arch)}
    params = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in params if applies_to == "all" or id(p) in kernels]
    rest = [p for p in params if not (applies_to == "all" or id(p) in kernels)]
    if not weight_decay or not rest:  # one group: one fused/foreach update per step instead of two
        return [{"params": params, "weight_decay": weight_decay if rest == [] else 0.0}]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def make_optimizer(settings: OptimizerSettings, model: nn.Module, arch: Architecture) -> torch.optim.Optimizer:
    groups = parameter_groups(model, arch, settings.weight_decay, settings.weight_decay_applies_to)
    lr = settings.learning_rate
    if settings.kind == "sgd":
        # PyTorch refuses nesterov without momentum; at momentum 0 both forms are plain SGD.
        nesterov = settings.nesterov and settings.momentum > 0
        return torch.optim.SGD(groups, lr=lr, momentum=settings.momentum, nesterov=nesterov)
    betas = (settings.beta1, settings.beta2)
    if settings.kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=settings.epsilon)
    if settings.kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=settings.epsilon)
    raise ValueError(f"unknown optimizer kind {settings.kind!r}")  # the schema admits no other


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate
