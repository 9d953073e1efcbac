"""Hand-written PyTorch ResNets, the way people write them, as references for the torch backend.

* :func:`resnet18` / :func:`resnet50`: torchvision's classic code (stride in the 3x3 conv, i.e.
  "v1.5"; bias-free convs; 1x1 conv + BN downsample; kaiming_normal fan_out init; default Linear
  init), rewritten here so the comparison does not depend on torchvision.
* :func:`cifar_resnet`: the CIFAR-10 ResNet of the paper (depth 6n + 2) with the option A
  shortcut (every second row/column, zero channels half before, half after), as in the common
  PyTorch re-implementations, initialized like the torchvision models above.

Used by ``tests/test_backend_torch.py`` (numerical equivalence) and ``benchmarks/bench_torch.py``
(build time and training throughput). Each ``*_spec`` function returns the equivalent spec.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init(self)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


class CifarBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = (planes - inplanes) // 2 if stride != 1 or inplanes != planes else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad is None:
            shortcut = x
        else:  # option A: subsample, then zero channels on both sides
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inplanes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers.append(
                nn.Sequential(
                    *[CifarBlock(inplanes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n)]
                )
            )
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean((2, 3)))


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> CifarResNet:
    return CifarResNet((depth - 2) // 6, num_classes)


# ---------------------------------------------------------------------- the equivalent specs

# PyTorch conventions: symmetric k // 2 padding, BN momentum 0.1 / eps 1e-5 / unbiased running
# variance, no conv bias, fan_out kaiming init, default Linear init.
TORCH_DEFAULTS: dict[str, Any] = {
    "norm": {"running_stats_decay": 0.9, "epsilon": 1e-5, "running_variance": "unbiased"},
    "conv_bias": False,
    "padding": "symmetric",
    "initializer": "kaiming_normal_fan_out",
}


def imagenet_spec(kind: str = "resnet18", size: int = 224, classes: int = 1000) -> dict[str, Any]:
    bottleneck = kind == "resnet50"
    counts = [3, 4, 6, 3] if bottleneck else [2, 2, 2, 2]
    widths = [256, 512, 1024, 2048] if bottleneck else [64, 128, 256, 512]
    stages = [
        {"block": "bottleneck" if bottleneck else "basic", "blocks": n, "filters": f, "stride": s,
         **({"stride_placement": "3x3"} if bottleneck else {}), "shortcut": {"kind": "projection", "norm": True}}
        for n, f, s in zip(counts, widths, [1, 2, 2, 2])
    ]  # fmt: skip
    return {
        "version": 1,
        "name": kind,
        "input": {"height": size, "width": size, "channels": 3},
        "classes": classes,
        "defaults": TORCH_DEFAULTS,
        "stem": [
            {"type": "conv", "filters": 64, "kernel_size": 7, "stride": 2, "padding": "symmetric", "bias": False},
            {"type": "norm"},
            {"type": "activation", "function": "relu"},
            {"type": "max_pool", "pool_size": 3, "stride": 2, "padding": 1},
        ],
        "stages": stages,
        "head": {"layers": [{"type": "global_avg_pool"}], "classifier": {"initializer": "torch_default"}},
    }


def cifar_spec(depth: int = 20, classes: int = 10) -> dict[str, Any]:
    n = (depth - 2) // 6
    return {
        "version": 1,
        "name": f"resnet{depth}",
        "input": {"height": 32, "width": 32, "channels": 3},
        "classes": classes,
        "defaults": TORCH_DEFAULTS,
        "stem": [{"type": "conv", "filters": 16}, {"type": "norm"}, {"type": "activation"}],
        "stages": [
            {"block": "basic", "blocks": n, "filters": f, "stride": s, "shortcut": "zero_pad"}
            for f, s in ((16, 1), (32, 2), (64, 2))
        ],
        "head": {"classifier": {"initializer": "torch_default"}},
    }
