"""The five seed systems of /work/shared/seed-systems.md written by hand, the way their articles
write them: Keras functional code for seeds 1-4, a PyTorch module for seed 5. Within a block the
residual branch is written first and added first (``Add()([x, shortcut])``), the shortcut after
it, as the seed description says. They share no code with resnet-spec; only the layer sizes come
from the descriptions (initializers do not matter: the tests copy weights across)."""

from __future__ import annotations

from typing import Any


def _keras() -> Any:
    import keras

    return keras


# --------------------------------------------------------------------------- seed 1


def resnet34_cifar10() -> Any:
    keras = _keras()
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.ZeroPadding2D(3)(inp)
    x = L.Conv2D(64, 7, strides=2, padding="same")(x)
    x = L.Activation("relu")(L.BatchNormalization()(x))
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (blocks, filters) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for b in range(blocks):
            convolutional = stage > 0 and b == 0
            y = L.Conv2D(filters, 3, strides=2 if convolutional else 1, padding="same")(x)
            y = L.Activation("relu")(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
            shortcut = L.Conv2D(filters, 1, strides=2)(x) if convolutional else x  # bias, no BN
            x = L.Activation("relu")(L.Add()([y, shortcut]))
    x = L.Flatten()(L.AveragePooling2D(2, padding="same")(x))
    x = L.Dense(512, activation="relu")(x)
    return keras.Model(inp, L.Dense(10, activation="softmax")(x))


# --------------------------------------------------------------------------- seed 2


def _conv_unit(x: Any, filters: int, kernel: int = 3, strides: int = 1, norm: bool = True,
               activation: str | None = "relu", conv_first: bool = True) -> Any:  # fmt: skip
    keras = _keras()
    L = keras.layers
    conv = L.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                    kernel_regularizer=keras.regularizers.L2(1e-4))  # fmt: skip
    if conv_first:
        x = conv(x)
        x = L.BatchNormalization()(x) if norm else x
        return L.Dropout(0.2)(L.Activation(activation)(x)) if activation else x
    x = L.BatchNormalization()(x) if norm else x
    x = L.Activation(activation)(x) if activation else x
    return conv(x)


def resnet_v2_cifar10(depth: int) -> Any:
    keras = _keras()
    L = keras.layers
    n = (depth - 2) // 9
    inp = keras.Input((32, 32, 3))
    x = _conv_unit(inp, 32)
    filters_in = 32
    for stage in range(3):
        filters_out = filters_in * (4 if stage == 0 else 2)
        for unit in range(n):
            strides = 2 if stage > 0 and unit == 0 else 1
            very_first = stage == 0 and unit == 0
            y = _conv_unit(x, filters_in, 1, strides, norm=not very_first, activation=None if very_first else "relu",
                           conv_first=False)  # fmt: skip
            y = _conv_unit(y, filters_in, 3, conv_first=False)
            y = _conv_unit(y, filters_out, 1, conv_first=False)
            if unit == 0:  # a bare 1x1 projection of the raw unit input
                x = _conv_unit(x, filters_out, 1, strides, norm=False, activation=None, conv_first=True)
            x = L.Add()([y, x])
        filters_in = filters_out
    x = L.Activation("relu")(L.BatchNormalization()(x))
    x = L.Flatten()(L.AveragePooling2D(8)(x))
    x = L.Dropout(0.5)(L.BatchNormalization()(L.Dense(512, activation="relu")(x)))
    return keras.Model(inp, L.Dense(10, activation="softmax")(x))


# --------------------------------------------------------------------------- seed 3


def resnet50_signs() -> Any:
    keras = _keras()
    L = keras.layers
    inp = keras.Input((64, 64, 3))
    x = L.Conv2D(64, 7, strides=2)(L.ZeroPadding2D(3)(inp))
    x = L.Activation("relu")(L.BatchNormalization(axis=3)(x))
    x = L.MaxPooling2D(3, strides=2)(x)
    for stage, (blocks, f, s) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2))):
        for b in range(blocks):
            stride = s if b == 0 else 1
            y = L.Activation("relu")(L.BatchNormalization(axis=3)(L.Conv2D(f, 1, strides=stride, padding="valid")(x)))
            y = L.Activation("relu")(L.BatchNormalization(axis=3)(L.Conv2D(f, 3, padding="same")(y)))
            y = L.BatchNormalization(axis=3)(L.Conv2D(4 * f, 1, padding="valid")(y))
            if b == 0:  # the convolutional block
                x = L.BatchNormalization(axis=3)(L.Conv2D(4 * f, 1, strides=stride, padding="valid")(x))
            x = L.Activation("relu")(L.Add()([y, x]))
    x = L.Flatten()(L.AveragePooling2D(2)(x))
    return keras.Model(inp, L.Dense(6, activation="softmax")(x))


# --------------------------------------------------------------------------- seed 4


def resnet20_cifar10(option: str = "A") -> Any:
    keras = _keras()
    L, ops = keras.layers, keras.ops
    inp = keras.Input((32, 32, 3))
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    for stage, filters in enumerate((16, 32, 64)):
        for b in range(3):
            downsample = stage > 0 and b == 0
            y = L.Conv2D(filters, 3, strides=2 if downsample else 1, padding="same")(x)
            y = L.Activation("relu")(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
            if downsample and option == "A":  # every second row and column, half the new channels each side
                half = filters // 4
                x = L.Lambda(lambda t, h=half: ops.pad(t[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [h, h]]))(x)
            elif downsample:
                x = L.Conv2D(filters, 1, strides=2)(x)  # option B: bias, no BN
            x = L.Activation("relu")(L.Add()([y, x]))
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


# --------------------------------------------------------------------------- seed 5


def resnet18_xray() -> Any:
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
            )

        def forward(self, x: Any) -> Any:
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class XrayNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.AvgPool2d(7, 1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(512, 256),
                                      nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 2))  # fmt: skip

        def forward(self, x: Any) -> Any:
            return self.head(self.layers(self.maxpool(self.bn1(self.conv1(x)))))

    return XrayNet()
