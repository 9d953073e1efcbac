"""The optimizers of the trainer contract, in PyTorch's form, as one Keras optimizer.

Keras' own SGD keeps ``v = m * v - lr * g; w += v``, which differs from PyTorch's
``b = m * b + g; w -= lr * b`` as soon as the learning rate changes, and its ``weight_decay`` is
decoupled. The contract (:mod:`resnet_spec.training.job`) fixes PyTorch's forms, so
:class:`TorchFormOptimizer` implements them in ``update_step``; everything else (slot
variables, ``tf.distribute`` all-reduce and per-device updates, XLA, loss scaling through
``keras.optimizers.LossScaleOptimizer``) is Keras' optimizer machinery.

* ``sgd``: ``g' = g + wd * w``; ``b = m * b + g'``; ``w -= lr * b`` (Nesterov:
  ``w -= lr * (g' + m * b)``); no buffer when momentum is 0 (``w -= lr * g'``).
* ``adam``: ``g' = g + wd * w``, then Adam with bias correction (PyTorch's arithmetic:
  ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``).
* ``adamw``: ``w *= 1 - lr * wd`` first (decoupled), then Adam on ``g``.

Weight decay applies to the variables ``weight_decay_applies_to`` names: ``kernels`` (conv and
dense kernels, the variables named ``kernel``) or ``all`` trainable ones. The head's variables
(``head``, by path) learn at ``head_lr_multiplier`` times the rate, as if it were their own
``learning_rate`` (Keras has no parameter groups; PyTorch's group ``lr`` is the same product).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
from keras import ops

from resnet_spec.spec import Optimizer as OptimizerSettings


class TorchFormOptimizer(keras.optimizers.Optimizer):
    def __init__(self, kind: str = "sgd", learning_rate: float = 0.1, momentum: float = 0.0,
                 nesterov: bool = False, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 weight_decay: float = 0.0, decay: str = "kernels", head_lr_multiplier: float = 1.0,
                 head: Iterable[str] = (), name: str = "torch_form", **kwargs: Any):  # fmt: skip
        # The base class' own weight_decay (decoupled, every variable) stays off: decay is
        # applied in update_step, in the form and on the variables the contract says.
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if kind not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer kind {kind!r}")
        self.kind, self.momentum, self.nesterov = kind, float(momentum), bool(nesterov)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.decay_rate, self.decay_applies_to = float(weight_decay), decay
        self.head_lr_multiplier, self.head = float(head_lr_multiplier), frozenset(head)  # head: variable paths

    @classmethod
    def from_settings(cls, settings: OptimizerSettings, head: Iterable[str] = ()) -> TorchFormOptimizer:
        """``head``: the paths of the variables (``head.classifier/kernel``) that learn at
        ``settings.head_lr_multiplier`` times the rate."""
        return cls(settings.kind, settings.learning_rate, settings.momentum, settings.nesterov, settings.beta1,
                   settings.beta2, settings.epsilon, settings.weight_decay, settings.weight_decay_applies_to,
                   settings.head_lr_multiplier, head)  # fmt: skip

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        self._decayed = [self.decay_rate > 0 and (self.decay_applies_to == "all" or _is_kernel(v)) for v in var_list]
        self._rate_scales = [self.head_lr_multiplier if v.path in self.head else 1.0 for v in var_list]
        self._momentums: list[Any] = []
        self._velocities: list[Any] = []
        if self.kind == "sgd" and self.momentum > 0:
            self._momentums = self.add_optimizer_variables(var_list, "momentum")
        elif self.kind in ("adam", "adamw"):
            self._momentums = self.add_optimizer_variables(var_list, "m")
            self._velocities = self.add_optimizer_variables(var_list, "v")

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        if self._rate_scales[index] != 1.0:  # the head's own rate (PyTorch: its parameter group's lr)
            lr = ops.multiply(lr, ops.cast(self._rate_scales[index], variable.dtype))
        grad = ops.cast(gradient, variable.dtype)
        decay = self._decayed[index]
        wd = ops.cast(self.decay_rate, variable.dtype)
        if self.kind == "sgd":
            if decay:
                grad = ops.add(grad, ops.multiply(wd, variable))
            if self.momentum > 0:
                buffer = self._momentums[index]
                self.assign(buffer, ops.add(ops.multiply(self.momentum, buffer), grad))
                grad = ops.add(grad, ops.multiply(self.momentum, buffer)) if self.nesterov else buffer
            self.assign_sub(variable, ops.multiply(lr, grad))
            return
        if decay and self.kind == "adam":
            grad = ops.add(grad, ops.multiply(wd, variable))
        elif decay:  # adamw: decoupled, before the Adam step (PyTorch's order)
            self.assign(variable, ops.multiply(variable, ops.subtract(1.0, ops.multiply(lr, wd))))
        step = ops.cast(self.iterations + 1, variable.dtype)
        correction1 = ops.subtract(1.0, ops.power(ops.cast(self.beta1, variable.dtype), step))
        correction2 = ops.subtract(1.0, ops.power(ops.cast(self.beta2, variable.dtype), step))
        m, v = self._momentums[index], self._velocities[index]
        self.assign(m, ops.add(ops.multiply(self.beta1, m), ops.multiply(1.0 - self.beta1, grad)))
        self.assign(v, ops.add(ops.multiply(self.beta2, v), ops.multiply(1.0 - self.beta2, ops.square(grad))))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(correction2)), self.epsilon)
        self.assign_sub(variable, ops.multiply(ops.divide(lr, correction1), ops.divide(m, denominator)))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "kind": self.kind, "momentum": self.momentum, "nesterov": self.nesterov,
            "beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon, "weight_decay": self.decay_rate,
            "decay": self.decay_applies_to, "head_lr_multiplier": self.head_lr_multiplier, "head": sorted(self.head),
        }  # fmt: skip


def _is_kernel(variable: Any) -> bool:
    """Conv and dense kernels are the only variables named ``kernel`` in a built model."""
    return variable.name.split(":")[0].split("/")[-1] == "kernel"
