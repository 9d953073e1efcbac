"""Initializers by graph name (:data:`resnet_spec.graph.InitializerName`).

The names say which framework's convention they follow, because the frameworks disagree:
Keras' ``HeNormal`` is a truncated normal, PyTorch's ``kaiming_normal_`` a plain one, and
PyTorch's layer default (``torch_default``) also draws the bias, from the kernel's fan-in.
Keras computes fan-in of a conv kernel (kh, kw, in / groups, out) as kh * kw * in / groups and
fan-out as kh * kw * out, which are PyTorch's values too.
"""

from __future__ import annotations

import keras

from .layers import TorchBiasUniform

_KERNEL = {
    "he_normal": lambda: keras.initializers.HeNormal(),  # truncated at 2 sigma, std sqrt(2 / fan_in)
    "he_uniform": lambda: keras.initializers.HeUniform(),
    "kaiming_normal": lambda: keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal"),
    "kaiming_normal_fan_out": lambda: keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
    "glorot_uniform": lambda: keras.initializers.GlorotUniform(),
    "glorot_normal": lambda: keras.initializers.GlorotNormal(),
    "lecun_normal": lambda: keras.initializers.LecunNormal(),
    # kaiming_uniform(a=sqrt(5)): gain sqrt(1/3), bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in),
    # which is VarianceScaling's uniform limit sqrt(3 * scale / fan_in) with scale 1/3.
    "torch_default": lambda: keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
    "zeros": lambda: keras.initializers.Zeros(),
}


def kernel_initializer(name: str) -> keras.initializers.Initializer:
    return _KERNEL[name]()


def bias_initializer(name: str, fan_in: int) -> keras.initializers.Initializer | str:
    """Zero biases, except PyTorch's default, which draws them from the kernel's fan-in."""
    return TorchBiasUniform(fan_in) if name == "torch_default" else "zeros"


def known() -> frozenset[str]:
    return frozenset(_KERNEL)
