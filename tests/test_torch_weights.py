"""The PyTorch backend's weight exchange and parity probe (resnet_spec_torch.weights / .probe):
the neutral layout round trip, the conv / dense / flatten permutations against hand computation,
probe gradients against finite differences, and norm statistics against NumPy. PyTorch only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import resnet_spec
from resnet_spec.backends import BackendError, WeightAccess, get_backend
from resnet_spec.weights import initial_weights, shapes

pytestmark = pytest.mark.torch


def torch_backend() -> Any:
    backend = get_backend("torch")
    if isinstance(backend, WeightAccess):
        return backend
    from resnet_spec_torch import TorchBackend
    from resnet_spec_torch.capabilities import TorchCapabilities

    class Backend(TorchBackend, TorchCapabilities):  # until TorchBackend inherits the mixin
        pass

    return Backend()


BACKEND = torch_backend()


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny networks: one intra-op thread is faster, and far steadier on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# A 2x2x3 map flattened (where (h, w, c) and (c, h, w) orders differ), then a batch norm over the
# flattened vector (its statistics permute too), dropout, a dense layer, the classifier. Grouped
# stem conv with bias, a norm without beta and one without gamma, L2 on every kernel.
FLAT: dict[str, Any] = {
    "version": 1, "input": {"height": 2, "width": 2, "channels": 3}, "classes": 4,
    "defaults": {"conv_bias": True, "kernel_l2": 0.01, "norm": {"running_stats_decay": 0.9, "epsilon": 1e-3}},
    "stem": [{"type": "conv", "filters": 6, "kernel_size": 3, "groups": 3}, {"type": "norm", "center": False},
             {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 3}],
    "head": {"layers": [{"type": "flatten"}, {"type": "norm", "scale": False}, {"type": "dropout", "rate": 0.5},
                        {"type": "dense", "units": 5, "activation": "relu"}]},
}  # fmt: skip


def random_weights(arch: Any, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Every weight random (statistics positive), so no permutation error can hide behind
    constants."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, entry in shapes(arch).items():
        out[name] = {
            key: (rng.uniform(0.5, 1.5, shape) if key == "moving_variance" else rng.standard_normal(shape)).astype(np.float32)
            for key, shape in entry.items()
        }
    return out


def built(arch: Any, weights: Any, dtype: Any = None) -> Any:
    model = BACKEND.build(arch)
    if dtype is not None:
        model = model.to(dtype)
    BACKEND.set_weights(model, arch, weights)
    return model


# ---------------------------------------------------------------------------- layout


@pytest.mark.parametrize("spec", ["flat", "examples/resnext50_32x4d.yaml", "examples/resnet_v2_11_cifar10.yaml"])
def test_get_set_get_round_trip_is_exact(spec: str) -> None:
    arch = resnet_spec.build_architecture(FLAT if spec == "flat" else spec)
    weights = random_weights(arch, 0)
    model = built(arch, weights)
    got = BACKEND.get_weights(model, arch)
    assert got.keys() == weights.keys()
    for name, entry in weights.items():
        assert got[name].keys() == entry.keys(), name
        for key, value in entry.items():
            assert got[name][key].dtype == np.float32
            np.testing.assert_array_equal(got[name][key], value, err_msg=f"{name}.{key}")
    again = BACKEND.build(arch)
    BACKEND.set_weights(again, arch, got)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_neutral_layout_against_hand_computation() -> None:
    arch = resnet_spec.build_architecture(FLAT)
    weights = random_weights(arch, 1)
    model = built(arch, weights)
    # grouped conv: OIHW[o, i, y, x] == HWIO[y, x, i, o]
    kernel = weights["stem.conv1"]["kernel"]
    assert kernel.shape == (3, 3, 1, 6)
    native = model.stem.conv1.weight.detach().numpy()
    for o in range(6):
        for y in range(3):
            for x in range(3):
                assert native[o, 0, y, x] == kernel[y, x, 0, o]
    # dense after a flatten of (H, W, C) = (2, 2, 3): NCHW feature c*H*W + h*W + w is graph
    # feature h*W*C + w*C + c; the batch norm over that vector permutes the same way
    H, W, C = 2, 2, 3
    dense = weights["head.dense1"]["kernel"]
    linear = model.head.dense1.weight.detach().numpy()
    mean = weights["head.norm1"]["moving_mean"]
    running = model.head.norm1.running_mean.numpy()
    beta = weights["head.norm1"]["beta"]
    assert model.head.norm1.weight is None and model.stem.norm1.bias is None  # scale / center off
    for h in range(H):
        for w in range(W):
            for c in range(C):
                torch_index, graph_index = c * H * W + h * W + w, h * W * C + w * C + c
                np.testing.assert_array_equal(linear[:, torch_index], dense[graph_index, :])
                assert running[torch_index] == mean[graph_index]
                assert model.head.norm1.bias.detach().numpy()[torch_index] == beta[graph_index]
    # the classifier reads a (5,) vector: a plain transpose
    np.testing.assert_array_equal(model.head.classifier.weight.detach().numpy(), weights["head.classifier"]["kernel"].T)


def test_the_model_computes_the_neutral_function() -> None:
    """Eval-mode logits from NumPy, starting at the last map (NHWC, from node_outputs) and
    applying flatten (h, w, c), the vector batch norm, dense, ReLU and the classifier with the
    neutral weights as given."""
    arch = resnet_spec.build_architecture(FLAT)
    weights = random_weights(arch, 2)
    model = built(arch, weights)
    images = np.random.default_rng(3).standard_normal((4, 2, 2, 3)).astype(np.float32)
    outputs = BACKEND.node_outputs(model, arch, images)
    x = outputs["stage1.block0.out_act"].reshape(4, -1).astype(np.float64)
    norm = weights["head.norm1"]
    x = (x - norm["moving_mean"]) / np.sqrt(norm["moving_variance"] + 1e-3) + norm["beta"]
    x = np.maximum(x @ weights["head.dense1"]["kernel"] + weights["head.dense1"]["bias"], 0)
    logits = x @ weights["head.classifier"]["kernel"] + weights["head.classifier"]["bias"]
    with torch.no_grad():
        model.eval()
        got = model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)


def test_set_weights_refuses_incomplete_or_misshapen_weights() -> None:
    arch = resnet_spec.build_architecture(FLAT)
    model = BACKEND.build(arch)
    weights = initial_weights(arch, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = {name: dict(entry) for name, entry in weights.items()}
    bad["head.dense1"]["kernel"] = bad["head.dense1"]["kernel"].T
    with pytest.raises(BackendError, match="head.dense1.kernel"):
        BACKEND.set_weights(model, arch, bad)
    missing = {name: entry for name, entry in weights.items() if name != "stem.norm1"}
    with pytest.raises(BackendError, match="stem.norm1"):
        BACKEND.set_weights(model, arch, missing)
    extra = {**weights, "nowhere": {"kernel": np.zeros(1)}}
    with pytest.raises(BackendError, match="nowhere"):
        BACKEND.set_weights(model, arch, extra)
    unlearned = {name: dict(entry) for name, entry in weights.items()}
    unlearned["stem.norm1"]["beta"] = np.zeros(6, np.float32)  # center: false has no beta
    with pytest.raises(BackendError, match="stem.norm1"):
        BACKEND.set_weights(model, arch, unlearned)
    for key, value in model.state_dict().items():  # nothing was half-assigned
        assert torch.equal(value, before[key]), key


def test_compiled_and_channels_last_models_exchange_weights_too() -> None:
    arch = resnet_spec.build_architecture(FLAT)
    weights = random_weights(arch, 4)
    model = BACKEND.build(arch, channels_last=True)
    BACKEND.set_weights(model, arch, weights)
    assert model.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    got = BACKEND.get_weights(torch.compile(model), arch)  # an OptimizedModule wrapper (not run)
    np.testing.assert_array_equal(got["stem.conv1"]["kernel"], weights["stem.conv1"]["kernel"])


# ---------------------------------------------------------------------------- the probe


def probe(arch: Any, weights: Any, batches: Any, dtype: Any = None, **kwargs: Any) -> Any:
    settings = {"steps": 1, "learning_rate": 0.0, "momentum": 0.0, "weight_decay": 0.0, **kwargs}
    return BACKEND.train_probe(built(arch, weights, dtype), arch, batches, **settings)


def test_probe_gradients_match_finite_differences() -> None:
    """Central differences of the probe's loss in float64 (batch-norm batch statistics, the L2
    term, dropout as identity, the flatten permutation all included) against its gradients."""
    arch = resnet_spec.build_architecture(FLAT)
    weights = {n: {k: v.astype(np.float64) for k, v in e.items()} for n, e in random_weights(arch, 5).items()}
    rng = np.random.default_rng(6)
    batch = [(rng.standard_normal((3, 2, 2, 3)).astype(np.float32), np.array([0, 3, 1]))]
    gradients = probe(arch, weights, batch, torch.float64).gradients
    assert set(gradients) == set(weights)
    model = BACKEND.build(arch).to(torch.float64)  # reused: set_weights restores weights and statistics

    def loss_at(moved: Any) -> float:
        BACKEND.set_weights(model, arch, moved)
        return BACKEND.train_probe(model, arch, batch, steps=1, learning_rate=0.0, momentum=0.0,
                                   weight_decay=0.0).losses[0]  # fmt: skip

    eps = 1e-6
    for name, entry in weights.items():
        for key in entry:
            if key.startswith("moving_"):
                assert key not in gradients[name]
                continue
            value = entry[key]
            for flat in rng.choice(value.size, size=min(2, value.size), replace=False):
                index = np.unravel_index(flat, value.shape)
                losses = []
                for sign in (1, -1):
                    moved = {n: dict(e) for n, e in weights.items()}
                    moved[name][key] = value.copy()
                    moved[name][key][index] += sign * eps
                    losses.append(loss_at(moved))
                numeric = (losses[0] - losses[1]) / (2 * eps)
                scale = max(np.abs(gradients[name][key]).max(), 1e-3)
                assert abs(gradients[name][key][index] - numeric) <= 1e-4 * scale, (name, key, index)


def test_probe_outputs_are_nhwc_and_in_graph_flatten_order() -> None:
    arch = resnet_spec.build_architecture(FLAT)
    images = np.random.default_rng(7).standard_normal((4, 2, 2, 3)).astype(np.float32)
    weights = random_weights(arch, 8)
    result = probe(arch, weights, [(images, np.array([0, 1, 2, 3]))])
    out = result.train_outputs
    assert out["stem.conv1"].shape == (4, 2, 2, 6)
    np.testing.assert_array_equal(out["head.flatten1"], out["stage1.block0.out_act"].reshape(4, -1))
    x = out["head.flatten1"].astype(np.float64)  # the vector norm in training mode: batch statistics
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3) + weights["head.norm1"]["beta"]
    np.testing.assert_allclose(out["head.norm1"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out["head.dropout1"], out["head.norm1"])  # dropout is the identity
    dense = out["head.dropout1"] @ weights["head.dense1"]["kernel"] + weights["head.dense1"]["bias"]
    np.testing.assert_allclose(out["head.dense1"], dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["biased", "unbiased"])
def test_probe_norm_statistics_against_numpy(mode: str) -> None:
    """N*H*W = 1*6*6 = 36: unbiased/biased = 36/35, far above the tolerance. Two steps at
    learning rate 0: the statistics after the first forward stay as they were after it."""
    spec = {
        "version": 1, "input": {"height": 6, "width": 6, "channels": 2}, "classes": 3,
        "defaults": {"norm": {"running_stats_decay": 0.9, "epsilon": 1e-3, "running_variance": mode}},
        "stem": [{"type": "norm"}],
        "stages": [{"block": "basic", "blocks": 1, "filters": 2}],
    }  # fmt: skip
    arch = resnet_spec.build_architecture(spec)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((1, 6, 6, 2)).astype(np.float32), np.array([1])) for _ in range(2)]
    ddof = 0 if mode == "biased" else 1
    stats = [(x.reshape(-1, 2).mean(axis=0), x.reshape(-1, 2).var(axis=0, ddof=ddof)) for x, _ in batches]
    result = probe(arch, initial_weights(arch, 0), batches, steps=2)
    first = result.stats_after_forward["stem.norm1"]
    np.testing.assert_allclose(first["moving_mean"], 0.1 * stats[0][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(first["moving_variance"], 0.9 + 0.1 * stats[0][1], rtol=1e-5)
    after = result.weights_after["stem.norm1"]
    np.testing.assert_allclose(after["moving_mean"], 0.9 * 0.1 * stats[0][0] + 0.1 * stats[1][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(after["moving_variance"], 0.9 * (0.9 + 0.1 * stats[0][1]) + 0.1 * stats[1][1], rtol=1e-5)
    assert len(result.losses) == 2


def test_probe_sgd_step_momentum_and_decay_on_kernels_only() -> None:
    """Two steps on one batch: b1 = g1 + wd*w0, w1 = w0 - lr*b1, b2 = m*b1 + g2 + wd*w1; biases
    and norm parameters get no decay. g2 is the gradient at w1 (a second probe from w1)."""
    arch = resnet_spec.build_architecture(FLAT)
    weights = random_weights(arch, 9)
    batch = [(np.random.default_rng(10).standard_normal((4, 2, 2, 3)).astype(np.float32), np.array([0, 1, 2, 3]))]
    lr, m, wd = 0.1, 0.9, 0.05
    two = probe(arch, weights, batch, steps=2, learning_rate=lr, momentum=m, weight_decay=wd)
    one = probe(arch, weights, batch, steps=1, learning_rate=lr, momentum=m, weight_decay=wd)
    g2 = probe(arch, one.weights_after, batch).gradients
    assert two.losses[0] == one.losses[0] and len(two.losses) == 2
    for name, entry in one.gradients.items():
        for key, g1 in entry.items():
            decay = wd if key == "kernel" else 0.0
            w0 = weights[name][key].astype(np.float64)
            b1 = g1 + decay * w0
            w1 = w0 - lr * b1
            np.testing.assert_allclose(one.weights_after[name][key], w1, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{key}")
            w2 = w1 - lr * (m * b1 + g2[name][key] + decay * one.weights_after[name][key])
            np.testing.assert_allclose(two.weights_after[name][key], w2, rtol=1e-4, atol=1e-5, err_msg=f"{name}.{key}")


def test_probe_trains_a_softmax_model_on_its_logits() -> None:
    base = {k: v for k, v in FLAT.items() if k != "head"}
    logits = resnet_spec.build_architecture(base)
    softmax = resnet_spec.build_architecture({**base, "head": {"output": "softmax"}})
    start = initial_weights(logits, 0)
    batch = [(10 * np.random.default_rng(4).standard_normal((2, 2, 2, 3)).astype(np.float32), np.array([0, 3]))]
    a, b = probe(logits, start, batch), probe(softmax, start, batch)
    assert a.losses == b.losses
    np.testing.assert_array_equal(a.gradients["head.classifier"]["kernel"], b.gradients["head.classifier"]["kernel"])


def test_probe_leaves_modes_as_they_were() -> None:
    arch = resnet_spec.build_architecture(FLAT)
    model = built(arch, initial_weights(arch, 0))
    model.eval()
    BACKEND.train_probe(model, arch, [(np.zeros((2, 2, 2, 3), np.float32), np.array([0, 1]))], steps=1,
                        learning_rate=0.1, momentum=0.0, weight_decay=0.0)  # fmt: skip
    assert not any(m.training for m in model.modules())
