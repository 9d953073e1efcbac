"""The trainer contract's optimizers: PyTorch's own, with weight decay only on the parameters
``weight_decay_applies_to`` names and the head at ``head_lr_multiplier`` times the rate
(parameter groups); frozen nodes' parameters are left out (``requires_grad`` off).

* ``sgd``: ``torch.optim.SGD``: ``g' = g + wd * w``; ``b = m * b + g'``; ``w -= lr * b``
  (Nesterov: ``w -= lr * (g' + m * b)``; no buffer at momentum 0);
* ``adam``: ``torch.optim.Adam`` (``weight_decay * w`` added to the gradient);
* ``adamw``: ``torch.optim.AdamW`` (decoupled: ``w *= 1 - lr * wd`` before the Adam step).

``kernels``: conv and dense kernels (the ``weight`` of every conv / dense node); ``all``: every
trainable parameter. The learning rate is set on every group before each step
(:func:`set_learning_rate`), from ``resnet_spec.training.schedule``, times the group's
``lr_scale``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from resnet_spec.spec import Optimizer as OptimizerSettings

from .weights import kernel_parameters

if TYPE_CHECKING:
    from resnet_spec.pipeline import Architecture


def parameter_groups(model: nn.Module, arch: Architecture, weight_decay: float, applies_to: str,
                     head_multiplier: float = 1.0, head: Iterable[str] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """The trainable parameters (frozen ones have ``requires_grad`` off) in as few groups as the
    recipe needs: decayed or not, head (``lr_scale`` = the head multiplier) or not."""
    kernels = {id(weight) for _, weight in kernel_parameters(model, arch)}
    scaled = {id(p) for name in head for p in model.get_submodule(name).parameters()} if head_multiplier != 1 else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            decayed = bool(weight_decay) and (applies_to == "all" or id(p) in kernels)
            groups.setdefault((decayed, id(p) in scaled), []).append(p)
    # Decayed before the rest, the body before the head: few groups (one fused/foreach update each).
    return [
        {"params": groups[key], "weight_decay": weight_decay if key[0] else 0.0, "lr_scale": head_multiplier if key[1] else 1.0}
        for key in sorted(groups, key=lambda key: (not key[0], key[1]))
    ]  # fmt: skip


def freeze(model: nn.Module, nodes: Iterable[str]) -> list[nn.Module]:
    """Stop the weight nodes ``nodes`` from training; return their batch norms, which
    :func:`hold_statistics` keeps in eval mode (running statistics used, never updated)."""
    norms: list[nn.Module] = []
    for name in nodes:
        module = model.get_submodule(name)
        for p in module.parameters():
            p.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            norms.append(module)
    hold_statistics(norms)
    return norms


def hold_statistics(norms: Sequence[nn.Module]) -> None:
    """Frozen batch norms back in eval mode: ``model.train()`` (anyone's) would switch them on."""
    for module in norms:
        module.training = False


def make_optimizer(settings: OptimizerSettings, model: nn.Module, arch: Architecture,
                   head: Iterable[str] = ()) -> torch.optim.Optimizer:  # fmt: skip
    groups = parameter_groups(model, arch, settings.weight_decay, settings.weight_decay_applies_to,
                              settings.head_lr_multiplier, head)  # fmt: skip
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
        group["lr"] = rate * group.get("lr_scale", 1.0)
