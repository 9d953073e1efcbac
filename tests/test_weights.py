"""Seeded, framework-neutral initialization means exactly what docs/spec-language.md says."""

from __future__ import annotations

import math

import numpy as np
import pytest

import resnet_spec
from resnet_spec.weights import initial_weights, shapes


def arch_with(initializer: str, filters: int = 256, groups: int = 1):  # type: ignore[no-untyped-def]
    spec = {
        "version": 1, "input": {"height": 8, "width": 8, "channels": 64}, "classes": 10,
        "defaults": {"initializer": initializer, "conv_bias": True},
        "stem": [{"type": "conv", "filters": filters, "kernel_size": 3, "groups": groups}],
        "stages": [{"block": "basic", "blocks": 1, "filters": filters}],
        "head": {"classifier": {"initializer": initializer}},
    }  # fmt: skip
    return resnet_spec.build_architecture(spec)


def test_same_seed_same_weights_different_seed_different() -> None:
    arch = arch_with("he_normal")
    a, b, c = initial_weights(arch, 1), initial_weights(arch, 1), initial_weights(arch, 2)
    assert all(np.array_equal(a[n][k], b[n][k]) for n in a for k in a[n])
    assert not np.array_equal(a["stem.conv1"]["kernel"], c["stem.conv1"]["kernel"])


def test_neutral_shapes() -> None:
    arch = arch_with("he_normal", groups=4)
    s = shapes(arch)
    assert s["stem.conv1"]["kernel"] == (3, 3, 16, 256)
    assert s["head.classifier"]["kernel"] == (256, 10)
    assert set(s["stem.conv1"]) == {"kernel", "bias"}


@pytest.mark.parametrize(
    ("name", "std", "truncated"),
    [
        ("he_normal", math.sqrt(2 / (9 * 64)), True),
        ("kaiming_normal", math.sqrt(2 / (9 * 64)), False),
        ("kaiming_normal_fan_out", math.sqrt(2 / (9 * 256)), False),
        ("lecun_normal", math.sqrt(1 / (9 * 64)), True),
        ("glorot_normal", math.sqrt(2 / (9 * 64 + 9 * 256)), True),
    ],
)
def test_normal_initializers(name: str, std: float, truncated: bool) -> None:
    kernel = initial_weights(arch_with(name), 0)["stem.conv1"]["kernel"]
    assert kernel.std() == pytest.approx(std, rel=0.02)
    raw_limit = 2 * std / 0.87962566103423978
    assert (np.abs(kernel).max() <= raw_limit + 1e-7) == truncated


@pytest.mark.parametrize(
    ("name", "bound"),
    [("he_uniform", math.sqrt(6 / (9 * 64))), ("glorot_uniform", math.sqrt(6 / (9 * 64 + 9 * 256))),
     ("torch_default", 1 / math.sqrt(9 * 64))],
)  # fmt: skip
def test_uniform_initializers(name: str, bound: float) -> None:
    w = initial_weights(arch_with(name), 0)
    kernel = w["stem.conv1"]["kernel"]
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.98 * bound
    bias = w["stem.conv1"]["bias"]
    assert (np.abs(bias).max() > 0) == (name == "torch_default")


def test_norm_starts_at_identity_and_zero_init() -> None:
    spec = {
        "version": 1, "input": {"height": 8, "width": 8, "channels": 3}, "classes": 2,
        "stages": [{"block": "basic", "blocks": 1, "filters": 4, "zero_init_last_norm": True}],
    }  # fmt: skip
    w = initial_weights(resnet_spec.build_architecture(spec), 0)
    assert (w["stage1.block0.norm1"]["gamma"] == 1).all() and (w["stage1.block0.norm2"]["gamma"] == 0).all()
    assert (w["stage1.block0.norm1"]["moving_variance"] == 1).all() and (w["stage1.block0.norm1"]["moving_mean"] == 0).all()
