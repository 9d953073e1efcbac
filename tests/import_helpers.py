"""Shared by the import tests: a small spec, random weights for it, and the same weights written
the way torchvision and keras.applications name and lay them out (written here from those
libraries' documented conventions, independently of the importer)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from resnet_spec import build_architecture
from resnet_spec.pipeline import Architecture
from resnet_spec.weights import Weights, shapes

# Stage 1's first block has a conv3 and a projection of the same shape (1x1, 8 -> 16), as
# ResNet-50's first block does: only structure can tell them apart.
TINY = """\
version: 1
name: tiny
input: {height: 16, width: 16, channels: 3}
classes: 5
defaults: {conv_bias: false, padding: symmetric, initializer: he_normal}
stem:
  - {type: conv, filters: 8, kernel_size: 3}
  - {type: norm}
  - {type: activation}
stages:
  - {block: bottleneck, blocks: 2, filters: 16, stride: 1, bottleneck_ratio: 2, shortcut: {kind: projection, norm: true}}
  - {block: bottleneck, blocks: 2, filters: 32, stride: 2, bottleneck_ratio: 2, shortcut: {kind: projection, norm: true}}
head:
  layers: [{type: global_avg_pool}]
  classifier: {bias: true}
"""


def tiny(*overrides: str) -> Architecture:
    return build_architecture(TINY, overrides=list(overrides))


def random_weights(arch: Architecture, seed: int = 0) -> Weights:
    """Every tensor distinct (zeros and ones would hide a swapped assignment); running variances
    positive, as real ones are (a saved model with a negative one is refused)."""
    rng = np.random.default_rng(seed)
    return {
        name: {key: _sample(rng, key, shape) for key, shape in entry.items()}
        for name, entry in shapes(arch).items()
    }


def _sample(rng: np.random.Generator, key: str, shape: tuple[int, ...]) -> np.ndarray:
    values = rng.standard_normal(shape).astype(np.float32)
    return np.abs(values) + np.float32(0.1) if key == "moving_variance" else values


def torch_layout(key: str, value: np.ndarray) -> np.ndarray:
    if key == "kernel":
        return value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T  # OIHW; Linear (out, in)
    return value


_TORCH_KEYS = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}  # fmt: skip


def torchvision_name(node: str) -> str:
    fixed = {"stem.conv1": "conv1", "stem.norm1": "bn1", "head.classifier": "fc"}
    if node in fixed or node.startswith("head."):
        return fixed.get(node, node)
    match = re.fullmatch(r"stage(\d+)\.block(\d+)\.(.+)", node)
    assert match, node
    stage, block, rest = match.groups()
    rest = {"shortcut.conv": "downsample.0", "shortcut.norm": "downsample.1"}.get(rest, rest.replace("norm", "bn"))
    return f"layer{stage}.{block}.{rest}"


def torchvision_state_dict(weights: Weights) -> dict[str, np.ndarray]:
    """The weights as torchvision's ResNet state dict would hold them, in the modules' order."""
    items: list[tuple[str, np.ndarray]] = []
    for node, entry in weights.items():
        module = torchvision_name(node)
        for key, value in entry.items():
            items.append((f"{module}.{_TORCH_KEYS[key]}", torch_layout(key, value)))
        if "moving_mean" in entry:
            items.append((f"{module}.num_batches_tracked", np.array(3, dtype=np.int64)))
    return dict(items)


def keras_name(node: str) -> str:
    """keras.applications' names: conv{stage + 1}_block{block + 1}_{0 shortcut | 1..3 branch}_{conv | bn}."""
    fixed = {"stem.conv1": "conv1_conv", "stem.norm1": "conv1_bn", "head.classifier": "predictions"}
    if node in fixed:
        return fixed[node]
    match = re.fullmatch(r"stage(\d+)\.block(\d+)\.(shortcut\.)?(conv|norm)(\d*)", node)
    assert match, node
    stage, block, shortcut, kind, index = match.groups()
    return f"conv{int(stage) + 1}_block{int(block) + 1}_{0 if shortcut else index}_{'conv' if kind == 'conv' else 'bn'}"


_KERAS_ORDER = {"kernel": 0, "bias": 1, "gamma": 0, "beta": 1, "moving_mean": 2, "moving_variance": 3}


def write_keras3_weights(path: Any, weights: Weights) -> None:
    """A Keras 3 ``.weights.h5``: layers/<class key>/vars/<i>, the layer name in vars' attrs."""
    import h5py

    counters: dict[str, int] = {}
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        for node, entry in weights.items():
            cls = (
                "batch_normalization" if "moving_mean" in entry else "dense" if node == "head.classifier" else "conv2d"
            )
            n = counters.get(cls, 0)
            counters[cls] = n + 1
            group = layers.create_group(cls if n == 0 else f"{cls}_{n}").create_group("vars")
            group.attrs["name"] = keras_name(node)
            for key, value in entry.items():
                group.create_dataset(str(_KERAS_ORDER[key]), data=value)
        f.create_group("vars").attrs["name"] = "resnet50"


def write_legacy_h5(path: Any, weights: Weights) -> None:
    """A Keras 2 weights file: root attr layer_names, per layer weight_names 'layer/var:0'."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([keras_name(n).encode() for n in weights])
        for node, entry in weights.items():
            layer = keras_name(node)
            group = f.create_group(layer)
            group.attrs["weight_names"] = np.array([f"{layer}/{key}:0".encode() for key in entry])
            for key, value in entry.items():
                group.create_dataset(f"{layer}/{key}:0", data=value)


def assert_same_weights(got: Weights, want: Weights) -> None:
    assert set(got) == set(want)
    for node, entry in want.items():
        assert set(got[node]) == set(entry), node
        for key, value in entry.items():
            np.testing.assert_array_equal(got[node][key], value, err_msg=f"{node}.{key}")
