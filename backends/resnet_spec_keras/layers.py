"""Custom Keras layers for the graph ops Keras has no exact native layer for.

Each is registered under the ``resnet_spec`` package so that ``keras.models.load_model(...,
safe_mode=True)`` can rebuild it from its config (``Lambda`` layers are pickled bytecode and
refused in safe mode). Keras 3 resolves a registered class only through its in-process registry:
it imports the saved ``module`` by itself only for ``keras*`` packages. So this module must be
imported (``import resnet_spec_keras.layers``) before loading a saved model in a new process;
:func:`resnet_spec_keras.KerasBackend.load` does that for you.

Importing this module imports Keras; ``import resnet_spec_keras`` alone does not.
"""

from __future__ import annotations

import math

from . import engine

engine.require()  # before Keras starts an engine resnet-spec does not run on

import keras
import numpy as np
from keras import ops

PACKAGE = "resnet_spec"
register = keras.saving.register_keras_serializable(package=PACKAGE)


def _pads(padding: tuple[int, int, int, int]) -> list[list[int]]:
    top, bottom, left, right = padding
    return [[0, 0], [top, bottom], [left, right], [0, 0]]


def _window_out(size: int | None, pad: int, kernel: int, stride: int) -> int | None:
    return None if size is None else (size + pad - kernel) // stride + 1


class _PaddedPool(keras.layers.Layer):
    """Shared config and shape rule of the pools with explicit per-side padding."""

    def __init__(self, pool_size, strides, padding, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = tuple(int(v) for v in padding)  # (top, bottom, left, right)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        top, bottom, left, right = self.padding
        return (
            n,
            _window_out(h, top + bottom, self.pool_size[0], self.strides[0]),
            _window_out(w, left + right, self.pool_size[1], self.strides[1]),
            c,
        )

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}


@register
class PaddedMaxPool2D(_PaddedPool):
    """Max pooling whose padded cells hold -inf, so they never win (PyTorch's rule; TF "same"
    behaves the same way). Used only when the padding is neither zero nor TF "same"."""

    def call(self, inputs):
        padded = ops.pad(inputs, _pads(self.padding), constant_values=-math.inf)
        return ops.max_pool(padded, self.pool_size, self.strides, padding="valid")


@register
class PaddedAvgPool2D(_PaddedPool):
    """Average pooling over the *real* cells of each window (padded cells excluded from the
    count, as TF "same" does) for paddings other than zero and TF "same".

    The zero-padded valid average is ``sum / area``; multiplying by ``area / real_cells`` (a
    constant map fixed by the input size, computed once in ``build``) gives ``sum / real_cells``.
    """

    def build(self, input_shape):
        _, h, w, _ = input_shape
        ones = np.pad(np.ones((h, w), np.float64), _pads(self.padding)[1:3])
        kh, kw = self.pool_size
        sh, sw = self.strides
        ho, wo = (ones.shape[0] - kh) // sh + 1, (ones.shape[1] - kw) // sw + 1
        real = np.array(
            [[ones[i * sh : i * sh + kh, j * sw : j * sw + kw].sum() for j in range(wo)] for i in range(ho)]
        )
        self._rescale = (kh * kw / real).astype(np.float32)[None, :, :, None]

    def call(self, inputs):
        padded = ops.pad(inputs, _pads(self.padding))
        mean = ops.average_pool(padded, self.pool_size, self.strides, padding="valid")
        return mean * ops.cast(self._rescale, mean.dtype)


@register
class UnbiasedBatchNormalization(keras.layers.BatchNormalization):
    """Batch norm whose moving variance accumulates the *unbiased* batch variance
    (``var * n / (n - 1)``, n = batch x height x width), as PyTorch's ``running_var`` does.

    Normalization itself still uses the biased variance, so only the training-mode update
    differs from Keras'; every other case (inference, masks, renorm) is the parent's code.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)
        shape = ops.shape(x)
        n = ops.cast(math.prod(shape[a] for a in self._reduction_axes), x.dtype)
        # n == 1 has no unbiased variance (PyTorch raises); keep the biased one instead of inf.
        unbiased = variance * n / ops.maximum(n - 1.0, 1.0)
        decay = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, x.dtype) * decay + mean * (1.0 - decay))
        self.moving_variance.assign(ops.cast(self.moving_variance, x.dtype) * decay + unbiased * (1.0 - decay))
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        out = ops.batch_normalization(x, mean, variance, axis=self.axis, offset=beta, scale=gamma, epsilon=self.epsilon)
        return ops.cast(out, self.compute_dtype)


@register
class DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zero the whole branch of a sample with probability
    ``rate`` and scale kept samples by ``1 / (1 - rate)``; identity at inference."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        uniform = keras.random.uniform(shape, dtype=inputs.dtype, seed=self.seed_generator)
        return inputs * ops.floor(keep + uniform) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@register
class ChannelPadShortcut(keras.layers.Layer):
    """The ResNet paper's option-A shortcut: ``x[:, ::s, ::s, :]``, then ``pad_before`` zero
    channels in front and ``pad_after`` behind. No weights."""

    def __init__(self, stride=1, pad_before=0, pad_after=0, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.pad_before, self.pad_after = int(stride), int(pad_before), int(pad_after)

    def call(self, inputs):
        s = self.stride
        picked = inputs[:, ::s, ::s, :] if s > 1 else inputs
        return ops.pad(picked, [[0, 0], [0, 0], [0, 0], [self.pad_before, self.pad_after]])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        s = self.stride
        ceil = lambda v: None if v is None else -(-v // s)
        return (n, ceil(h), ceil(w), c + self.pad_before + self.pad_after)

    def get_config(self):
        return {
            **super().get_config(),
            "stride": self.stride,
            "pad_before": self.pad_before,
            "pad_after": self.pad_after,
        }


@register
class TorchBiasUniform(keras.initializers.RandomUniform):
    """PyTorch's default bias init: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), where fan_in is
    the *kernel's* (a bias initializer only sees the bias shape, so it is stored here)."""

    def __init__(self, fan_in, seed=None):
        self.fan_in = int(fan_in)
        bound = 1.0 / math.sqrt(self.fan_in)
        super().__init__(minval=-bound, maxval=bound, seed=seed)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": super().get_config()["seed"]}


CUSTOM_OBJECTS = {
    f"{PACKAGE}>{cls.__name__}": cls
    for cls in (
        PaddedMaxPool2D,
        PaddedAvgPool2D,
        UnbiasedBatchNormalization,
        DropPath,
        ChannelPadShortcut,
        TorchBiasUniform,
    )
}
