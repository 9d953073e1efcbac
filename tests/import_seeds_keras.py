"""The seed systems of shared/seed-systems.md written by hand as functional Keras models, the way
each article builds them (Keras' own layer names, the article's creation order: seed 2 creates
its projection after the branch and adds (shortcut, branch); seed 3 names its layers as the
hand-signs article does, res2a_branch2a / bn2a_branch2a), for the import tests. Seed 5 is a
Keras port of the PyTorch article: symmetric padding as ZeroPadding2D, and its max pool padded
with -inf (the stem has no ReLU, so zeros would win over negative cells)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
from keras import layers

ROOT = Path(__file__).resolve().parents[1]


def _bn(eps: float = 1e-3, **kwargs: Any) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=eps, **kwargs)


# ---------------------------------------------------------------------- seed 1: ResNet-34, CIFAR-10


def seed1_resnet34() -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    x = layers.ZeroPadding2D(3)(inputs)
    x = layers.Activation("relu")(_bn()(layers.Conv2D(64, 7, strides=2, padding="same")(x)))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    cin = 64
    for stage, (count, filters) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for index in range(count):
            stride = 2 if stage and index == 0 else 1
            y = layers.Activation("relu")(_bn()(layers.Conv2D(filters, 3, strides=stride, padding="same")(x)))
            y = _bn()(layers.Conv2D(filters, 3, padding="same")(y))
            shortcut = (
                layers.Conv2D(filters, 1, strides=stride, padding="same")(x) if stride != 1 or cin != filters else x
            )
            x = layers.Activation("relu")(layers.Add()([y, shortcut]))
            cin = filters
    x = layers.Flatten()(layers.AveragePooling2D(2, padding="same")(x))
    x = layers.Dense(512, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


# ---------------------------------------------------------------------- seed 2: ResNet v2 (Keras example)


def _resnet_layer(x: Any, filters: int, kernel: int = 3, strides: int = 1, activation: str | None = "relu",
                  batch_normalization: bool = True, conv_first: bool = True) -> Any:  # fmt: skip
    conv = layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                         kernel_regularizer=keras.regularizers.l2(1e-4))  # fmt: skip
    if conv_first:
        x = conv(x)
        if batch_normalization:
            x = _bn()(x)
        if activation is not None:
            x = layers.Dropout(0.2)(layers.Activation(activation)(x))
        return x
    if batch_normalization:
        x = _bn()(x)
    if activation is not None:
        x = layers.Activation(activation)(x)
    return conv(x)


def seed2_resnet_v2(depth: int = 11, classes: int = 10) -> keras.Model:
    n = (depth - 2) // 9
    inputs = keras.Input((32, 32, 3))
    filters_in = 32
    x = _resnet_layer(inputs, filters_in, conv_first=True)
    for stage in range(3):
        for block in range(n):
            activation: str | None = "relu"
            batch_normalization, strides = True, 1
            if stage == 0:
                filters_out = filters_in * 4
                if block == 0:
                    activation, batch_normalization = None, False
            else:
                filters_out = filters_in * 2
                if block == 0:
                    strides = 2
            y = _resnet_layer(x, filters_in, 1, strides, activation, batch_normalization, conv_first=False)
            y = _resnet_layer(y, filters_in, conv_first=False)
            y = _resnet_layer(y, filters_out, 1, conv_first=False)
            if block == 0:  # created after the branch, and added first
                x = _resnet_layer(x, filters_out, 1, strides, activation=None, batch_normalization=False)
            x = layers.add([x, y])
        filters_in = filters_out
    x = layers.Activation("relu")(_bn()(x))
    x = layers.Flatten()(layers.AveragePooling2D(8)(x))
    x = layers.Dropout(0.5)(_bn()(layers.Dense(512, activation="relu")(x)))
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


# ---------------------------------------------------------------------- seed 3: ResNet-50, hand signs


def _signs_block(x: Any, filters: tuple[int, int, int], stage: int, block: str, stride: int, project: bool) -> Any:
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    shortcut = x
    x = layers.Activation("relu")(
        _bn(axis=3, name=bn + "2a")(layers.Conv2D(f1, 1, strides=stride, name=conv + "2a")(x))
    )
    x = layers.Activation("relu")(
        _bn(axis=3, name=bn + "2b")(layers.Conv2D(f2, 3, padding="same", name=conv + "2b")(x))
    )
    x = _bn(axis=3, name=bn + "2c")(layers.Conv2D(f3, 1, name=conv + "2c")(x))
    if project:
        shortcut = _bn(axis=3, name=bn + "1")(layers.Conv2D(f3, 1, strides=stride, name=conv + "1")(shortcut))
    return layers.Activation("relu")(layers.Add()([x, shortcut]))


def seed3_resnet50_signs(classes: int = 6) -> keras.Model:
    inputs = keras.Input((64, 64, 3))
    x = layers.ZeroPadding2D(3)(inputs)
    x = layers.Activation("relu")(_bn(axis=3, name="bn_conv1")(layers.Conv2D(64, 7, strides=2, name="conv1")(x)))
    x = layers.MaxPooling2D(3, strides=2)(x)
    for stage, (count, width, stride) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)), start=2):
        for index in range(count):
            x = _signs_block(
                x, (width, width, 4 * width), stage, "abcdef"[index], stride if index == 0 else 1, index == 0
            )
    x = layers.Flatten()(layers.AveragePooling2D(2)(x))
    return keras.Model(inputs, layers.Dense(classes, activation="softmax", name="fc")(x))


def seed3_keras_applications(classes: int = 6) -> keras.Model:
    """keras.applications.ResNet50 as a nested base model, then GAP, dropout 0.7, softmax."""
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    inputs = keras.Input((64, 64, 3))
    x = layers.Dropout(0.7)(layers.GlobalAveragePooling2D()(base(inputs)))
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


# ---------------------------------------------------------------------- seed 4: ResNet-20 (benchmarks' reference)


def seed4_resnet20(depth: int = 20) -> keras.Model:
    spec = importlib.util.spec_from_file_location("keras_reference", ROOT / "benchmarks" / "keras_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.resnet_v1(depth)


# ---------------------------------------------------------------------- seed 5: ResNet-18, chest X-rays


def _minus_inf_pad(x: Any) -> Any:
    return layers.Lambda(lambda t: keras.ops.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float("-inf")))(x)


def seed5_xray_resnet18() -> keras.Model:
    inputs = keras.Input((224, 224, 3))
    x = layers.Conv2D(64, 7, strides=2)(layers.ZeroPadding2D(3)(inputs))
    x = layers.MaxPooling2D(3, strides=2)(_minus_inf_pad(_bn(1e-5, momentum=0.9)(x)))
    cin = 64
    for stage, filters in enumerate((64, 128, 256, 512)):
        for index in range(2):
            stride = 2 if stage and index == 0 else 1
            y = layers.Conv2D(filters, 3, strides=stride)(layers.ZeroPadding2D(1)(x))
            y = layers.ReLU()(_bn(1e-5, momentum=0.9)(y))
            y = _bn(1e-5, momentum=0.9)(layers.Conv2D(filters, 3)(layers.ZeroPadding2D(1)(y)))
            shortcut = x
            if stride != 1 or cin != filters:
                shortcut = _bn(1e-5, momentum=0.9)(layers.Conv2D(filters, 1, strides=stride)(x))
            x = layers.ReLU()(layers.Add()([y, shortcut]))
            cin = filters
    x = layers.Dropout(0.5)(layers.Flatten()(layers.AveragePooling2D(7, strides=1)(x)))
    x = layers.Dropout(0.5)(layers.Dense(256, activation="relu")(x))
    return keras.Model(inputs, layers.Dense(2)(x))


SEEDS: dict[str, Callable[[], Any]] = {
    "resnet34_cifar10": seed1_resnet34,
    "resnet_v2_11_cifar10": seed2_resnet_v2,
    "resnet50_signs": seed3_resnet50_signs,
    "keras_applications_resnet50": seed3_keras_applications,
    "resnet20_cifar10": seed4_resnet20,
    "resnet18_xray": seed5_xray_resnet18,
}
