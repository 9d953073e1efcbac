"""The seed systems of shared/seed-systems.md written by hand in PyTorch, as a user porting each
article would write them (plain nn.Module code, its own names and registration order), for the
import tests. Keras' "same" padding is ported as TensorFlow computes it (extra row / column at
the bottom / right), and Keras' batch-norm defaults as eps 1e-3, momentum 0.01."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def tf_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    def amount(size: int) -> int:
        return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)

    ph, pw = amount(x.shape[-2]), amount(x.shape[-1])
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


class SameConv(nn.Conv2d):
    """Conv2D(padding="same") as Keras computes it."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel, stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(tf_same(x, self.kernel_size[0], self.stride[0]))


def keras_bn(channels: int, eps: float = 1e-3) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=0.01)


# ---------------------------------------------------------------------- seed 1: ResNet-34, CIFAR-10


class Seed1Block(nn.Module):
    def __init__(self, cin: int, filters: int, stride: int):
        super().__init__()
        self.conv_a = SameConv(cin, filters, 3, stride)
        self.bn_a = keras_bn(filters)
        self.conv_b = SameConv(filters, filters, 3)
        self.bn_b = keras_bn(filters)
        self.projection = SameConv(cin, filters, 1, stride) if stride != 1 or cin != filters else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(x)))))
        shortcut = x if self.projection is None else self.projection(x)
        return F.relu(y + shortcut)


class Seed1ResNet34(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = SameConv(3, 64, 7, 2)
        self.bn = keras_bn(64)
        blocks, cin = [], 64
        for stage, (count, filters) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            for index in range(count):
                blocks.append(Seed1Block(cin, filters, 2 if stage and index == 0 else 1))
                cin = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(512, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(F.pad(x, (3, 3, 3, 3)))))
        x = F.max_pool2d(tf_same(x, 3, 2, float("-inf")), 3, 2)
        x = F.avg_pool2d(self.blocks(x), 2)  # 2x2 map: "same" pads nothing
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.softmax(self.fc2(x), dim=1)


# ---------------------------------------------------------------------- seed 2: ResNet v2, 9n + 2


class Seed2Unit(nn.Module):
    """Pre-activation bottleneck; the shortcut is registered first, as an attribute set early."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int, first_of_net: bool, project: bool):
        super().__init__()
        self.shortcut = SameConv(cin, cout, 1, stride) if project else None
        self.bn1 = None if first_of_net else keras_bn(cin)
        self.conv1 = SameConv(cin, mid, 1, stride)
        self.bn2, self.conv2 = keras_bn(mid), SameConv(mid, mid, 3)
        self.bn3, self.conv3 = keras_bn(mid), SameConv(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.bn1 is None else F.relu(self.bn1(x))
        y = self.conv1(y)
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return (x if self.shortcut is None else self.shortcut(x)) + y


class Seed2ResNetV2(nn.Module):
    def __init__(self, depth: int = 11, classes: int = 10):
        super().__init__()
        n = (depth - 2) // 9
        self.stem_conv, self.stem_bn = SameConv(3, 32, 3), keras_bn(32)
        units, cin = [], 32
        for stage in range(3):
            cout = cin * 4 if stage == 0 else cin * 2
            for index in range(n):
                stride = 2 if stage and index == 0 else 1
                units.append(
                    Seed2Unit(cin if index == 0 else cout, cout, cin, stride, stage == 0 and index == 0, index == 0)
                )
            cin = cout
        self.units = nn.Sequential(*units)
        self.head_bn = keras_bn(512)
        self.fc = nn.Linear(512, 512)
        self.fc_bn = nn.BatchNorm1d(512, eps=1e-3, momentum=0.01)
        self.out = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(F.relu(self.stem_bn(self.stem_conv(x))))  # dropout 0.2: identity in eval
        x = F.avg_pool2d(F.relu(self.head_bn(x)), 8)
        x = self.fc_bn(F.relu(self.fc(torch.flatten(x, 1))))
        return F.softmax(self.out(x), dim=1)


# ---------------------------------------------------------------------- seed 3: ResNet-50 (hand signs)


class Seed3Bottleneck(nn.Module):
    """Stride in the first 1x1; biased convs; ``eps`` and stem padding vary between the two models."""

    def __init__(self, cin: int, filters: tuple[int, int, int], stride: int, eps: float):
        super().__init__()
        f1, f2, f3 = filters
        self.branch = nn.Sequential(
            nn.Conv2d(cin, f1, 1, stride), keras_bn(f1, eps), nn.ReLU(),
            SameConv(f1, f2, 3), keras_bn(f2, eps), nn.ReLU(),
            nn.Conv2d(f2, f3, 1), keras_bn(f3, eps),
        )  # fmt: skip
        project = stride != 1 or cin != f3
        self.shortcut = nn.Sequential(nn.Conv2d(cin, f3, 1, stride), keras_bn(f3, eps)) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class Seed3ResNet50(nn.Module):
    """``applications=False``: the article's hand-built ResNet-50 (valid stem, 2x2 average pool,
    flatten); ``True``: its keras.applications variant (pool after zero padding 1, BN eps
    1.001e-5, global average pool, dropout 0.7)."""

    def __init__(self, applications: bool = False, classes: int = 6):
        super().__init__()
        eps = 1.001e-5 if applications else 1e-3
        self.applications = applications
        self.conv1 = nn.Conv2d(3, 64, 7, 2)
        self.bn1 = keras_bn(64, eps)
        stages, cin = [], 64
        for index, (count, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            blocks = []
            for b in range(count):
                blocks.append(Seed3Bottleneck(cin, (width, width, 4 * width), 2 if index and b == 0 else 1, eps))
                cin = 4 * width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(F.pad(x, (3, 3, 3, 3)))))
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)) if self.applications else x, 3, 2)
        x = self.stages(x)
        x = x.mean((2, 3)) if self.applications else torch.flatten(F.avg_pool2d(x, 2), 1)
        return F.softmax(self.fc(x), dim=1)


# ---------------------------------------------------------------------- seed 4: ResNet-20, option A


class Seed4Block(nn.Module):
    def __init__(self, cin: int, filters: int, stride: int):
        super().__init__()
        self.c1, self.b1 = SameConv(cin, filters, 3, stride), keras_bn(filters)
        self.c2, self.b2 = SameConv(filters, filters, 3), keras_bn(filters)
        self.stride, self.extra = stride, filters - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        shortcut = x
        if self.stride != 1 or self.extra:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + shortcut)


class Seed4ResNet20(nn.Module):
    def __init__(self, depth: int = 20):
        super().__init__()
        n = (depth - 2) // 6
        self.conv, self.bn = SameConv(3, 16, 3), keras_bn(16)
        layers, cin = [], 16
        for stage, filters in enumerate((16, 32, 64)):
            for index in range(n):
                layers.append(Seed4Block(cin, filters, 2 if stage and index == 0 else 1))
                cin = filters
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


# ---------------------------------------------------------------------- seed 5: ResNet-18, chest X-rays


class Seed5Block(nn.Module):
    def __init__(self, cin: int, filters: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, filters, 3, stride, padding=1)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(filters)
        self.downsample = None
        if stride != 1 or cin != filters:
            self.downsample = nn.Sequential(nn.Conv2d(cin, filters, 1, stride), nn.BatchNorm2d(filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out += identity
        return F.relu(out)


class Seed5XrayResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        layers, cin = [], 64
        for stage, filters in enumerate((64, 128, 256, 512)):
            layers.append(nn.Sequential(Seed5Block(cin, filters, 2 if stage else 1), Seed5Block(filters, filters, 1)))
            cin = filters
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.classifier = nn.Sequential(
            nn.AvgPool2d(7, 1),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.bn1(self.conv1(x)))  # no ReLU in the stem, as the description has it
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(x)


SEEDS: dict[str, Callable[[], Any]] = {
    "resnet34_cifar10": Seed1ResNet34,
    "resnet_v2_11_cifar10": Seed2ResNetV2,
    "resnet50_signs": Seed3ResNet50,
    "keras_applications_resnet50": lambda: Seed3ResNet50(applications=True),
    "resnet20_cifar10": Seed4ResNet20,
    "resnet18_xray": Seed5XrayResNet18,
}
