"""A hand-written Keras ResNet v1 for CIFAR-10, the way people write it without resnet-spec.

It follows the classic Keras example (``resnet_layer`` = conv -> BN -> ReLU, ``add([shortcut,
branch])``, "same" padding, He-normal init, Keras' default biases and batch-norm settings) with
the paper's heads and shortcuts: global average pooling and a dense logits layer, and either
option A (``x[:, ::2, ::2, :]`` plus zero channels, as a small registered layer, not a
``Lambda``) or option B (a bare 1x1 stride-2 projection with bias). It is the yardstick for the
Keras backend's tests (parameter count, outputs after a weight copy) and benchmarks (build time,
training throughput); it deliberately shares no code with ``resnet_spec_keras``.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_reference")
class PadChannels(layers.Layer):
    """Option-A shortcut: subsample by ``stride`` and add ``extra`` zero channels, half in front."""

    def __init__(self, stride, extra, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.extra = stride, extra

    def call(self, x):
        x = x[:, :: self.stride, :: self.stride, :]
        before = self.extra // 2
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, self.extra - before]])

    def compute_output_shape(self, shape):
        n, h, w, c = shape
        return (n, -(-h // self.stride), -(-w // self.stride), c + self.extra)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "extra": self.extra}


def resnet_layer(inputs, num_filters=16, kernel_size=3, strides=1, activation="relu", batch_normalization=True,
                 kernel_l2=0.0):  # fmt: skip
    conv = layers.Conv2D(
        num_filters, kernel_size=kernel_size, strides=strides, padding="same", kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.l2(kernel_l2) if kernel_l2 else None,
    )  # fmt: skip
    x = conv(inputs)
    if batch_normalization:
        x = layers.BatchNormalization()(x)
    if activation is not None:
        x = layers.Activation(activation)(x)
    return x


def resnet_v1(depth=20, input_shape=(32, 32, 3), num_classes=10, shortcut="zero_pad", kernel_l2=0.0):
    if (depth - 2) % 6:
        raise ValueError("depth should be 6n+2 (20, 32, 44, 56, 110, 1202)")
    num_filters = 16
    num_res_blocks = (depth - 2) // 6
    inputs = keras.Input(shape=input_shape)
    x = resnet_layer(inputs, kernel_l2=kernel_l2)
    for stack in range(3):
        for res_block in range(num_res_blocks):
            strides = 2 if stack > 0 and res_block == 0 else 1
            y = resnet_layer(x, num_filters, strides=strides, kernel_l2=kernel_l2)
            y = resnet_layer(y, num_filters, activation=None, kernel_l2=kernel_l2)
            if stack > 0 and res_block == 0:
                if shortcut == "zero_pad":
                    x = PadChannels(strides, num_filters - num_filters // 2)(x)
                else:
                    x = resnet_layer(x, num_filters, kernel_size=1, strides=strides, activation=None,
                                     batch_normalization=False, kernel_l2=kernel_l2)  # fmt: skip
            x = layers.add([x, y])
            x = layers.Activation("relu")(x)
        num_filters *= 2
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, kernel_initializer="he_normal")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_v1")


def resnet_v1_spec(depth=20, shortcut="zero_pad"):
    """The resnet-spec document describing :func:`resnet_v1` (Keras defaults spelled out)."""
    n = (depth - 2) // 6
    return {
        "version": 1,
        "name": f"resnet{depth}_v1_reference",
        "input": {"height": 32, "width": 32, "channels": 3},
        "classes": 10,
        "defaults": {
            "conv_bias": True,
            "initializer": "he_normal",
            "norm": {"running_stats_decay": 0.99, "epsilon": 1e-3, "running_variance": "biased"},
        },
        "stem": [{"type": "conv", "filters": 16, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
        "stages": [
            {"block": "basic", "filters": f, "stride": s, "blocks": n,
             "shortcut": {"kind": "zero_pad"} if shortcut == "zero_pad" else {"kind": shortcut, "norm": False}}
            for f, s in ((16, 1), (32, 2), (64, 2))
        ],
        "head": {"classifier": {"initializer": "he_normal"}},
    }
