"""Every example compiles on both backends into exactly the network the graph describes: the
same parameter counts (trainable and non-trainable) and, node by node, the same output shapes.

Inputs are even-sized (odd sizes hide padding bugs). ImageNet-sized examples whose head pools
globally are checked at 64x64 through an override, which re-derives every predicted shape; the
others at their own input size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import resnet_spec
from resnet_spec.backends import get_backend

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
# Deep nets: full check in the slow profile only (ResNet-1202 has 4,208 nodes; ResNet101V2 is checked
# against keras.applications at 224x224 in tests/test_keras_applications_v2.py).
# ResNet-1202 (a minute a backend) is ResNet-110's blocks 200 times a stage: in the full sweep only.
EXHAUSTIVE = {"resnet1202_cifar10"}
SLOW = {"resnet1202_cifar10", "resnet152", "resnet101", "keras_resnet101v2_imagenet", "resnet_v2_164_cifar10", "wide_resnet28_10_cifar10"}


def _reduced(path: Path) -> list[str]:
    arch = resnet_spec.build_architecture(path)
    if arch.spec.input.height >= 128 and all(layer.type == "global_avg_pool" for layer in arch.spec.head.layers[:1]):
        return ["input.height=64", "input.width=64"]
    return []


def _cases() -> list[object]:
    cases = []
    for path in EXAMPLES:
        for backend in ("torch", "keras"):
            marks = [getattr(pytest.mark, backend)]
            if path.stem in SLOW:
                marks.append(pytest.mark.slow)
            if path.stem in EXHAUSTIVE:
                marks.append(pytest.mark.exhaustive)
            cases.append(pytest.param(path, backend, marks=marks, id=f"{path.stem}-{backend}"))
    return cases


@pytest.mark.parametrize(("path", "backend_name"), _cases())
def test_compiled_model_is_the_graph(path: Path, backend_name: str) -> None:
    pytest.importorskip("torch" if backend_name == "torch" else "tensorflow")
    arch = resnet_spec.build_architecture(path, overrides=_reduced(path))
    backend = get_backend(backend_name)
    model = backend.build(arch)
    assert backend.count_params(model) == (arch.params_trainable, arch.params_non_trainable)
    h, w, c = arch.spec.input.height, arch.spec.input.width, arch.spec.input.channels
    assert h % 2 == 0 and w % 2 == 0
    images = np.random.default_rng(0).standard_normal((2, h, w, c)).astype("float32")
    outputs = backend.node_outputs(model, arch, images)
    assert set(outputs) == {node.name for node in arch.graph}
    # Before training the running statistics are 0 and 1, so eval-mode batch norm normalizes
    # nothing and ResNet-1202's residual sum overflows float32 after ~25 of its 600 blocks.
    # That is the network, not the backend: only its shapes are checked.
    check_finite = path.stem != "resnet1202_cifar10"
    for node in arch.graph:
        assert outputs[node.name].shape == (2, *arch.shape_of(node.name)), node.name
        assert not check_finite or np.isfinite(outputs[node.name]).all(), node.name
