"""The Keras backend: specs go through the real pipeline, models are checked against the
analysis (names, shapes, parameter counts), hand-computed numpy, keras.applications' ResNet50
and a hand-written Keras ResNet-20 (benchmarks/keras_reference.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import time
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from resnet_spec import graph as g
from resnet_spec.backends import BackendError, get_backend
from resnet_spec.pipeline import build_architecture, validate

ROOT = Path(__file__).resolve().parents[1]
BACKEND = get_backend("keras")
RNG = np.random.default_rng(1234)


def arch_of(spec: dict):
    result = validate(spec)
    assert result.ok, [d.message for d in result.report.diagnostics]
    return result.architecture


def reference_module():
    spec = importlib.util.spec_from_file_location("keras_reference", ROOT / "benchmarks" / "keras_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- specs

RESNET20 = {  # ResNet-20 for CIFAR-10 as the classic Keras code writes it (biases, Keras BN defaults)
    "version": 1, "name": "resnet20", "input": {"height": 32, "width": 32, "channels": 3}, "classes": 10,
    "defaults": {"conv_bias": True, "initializer": "he_normal",
                 "norm": {"running_stats_decay": 0.99, "epsilon": 1e-3, "running_variance": "biased"}},
    "stem": [{"type": "conv", "filters": 16, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "filters": f, "stride": s, "blocks": 3, "shortcut": "zero_pad"}
               for f, s in ((16, 1), (32, 2), (64, 2))],
    "head": {"classifier": {"initializer": "he_normal"}},
}  # fmt: skip

# Every node type and every Keras mapping the builder has (native "same", custom pools, .pad layers).
ZOO = {
    "version": 1, "name": "zoo", "input": {"height": 16, "width": 16, "channels": 3}, "classes": 5,
    "defaults": {"initializer": "torch_default", "conv_bias": True,
                 "norm": {"running_variance": "unbiased", "running_stats_decay": 0.9}},
    "blocks": {"mixed": {
        "layers": [
            {"type": "conv", "filters_ratio": 1.0, "kernel_size": 3, "stride": "block", "padding": "symmetric"},
            {"type": "norm"}, {"type": "activation", "function": "gelu"}, {"type": "dropout", "rate": 0.1},
            {"type": "zero_pad", "padding": 1}, {"type": "conv", "kernel_size": 3, "padding": "valid"},
            {"type": "norm", "zero_init": True},
        ],
        "shortcut": {"kind": "avg_pool_projection"}}},
    "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"}, {"type": "activation", "function": "silu"}],
    "stages": [
        {"block": "basic", "filters": 8, "blocks": 1, "squeeze_excite": {"reduction": 4}, "stochastic_depth_rate": 0.1},
        {"block": "preact_bottleneck", "filters": 16, "stride": 2, "blocks": 1, "shortcut": "zero_pad", "groups": 2},
        {"block": "mixed", "filters": 24, "stride": 2, "blocks": 1},
    ],
    "head": {"layers": [
        {"type": "max_pool", "pool_size": 2, "stride": 1, "padding": [1, 0, 1, 0]},
        {"type": "avg_pool", "pool_size": 2, "stride": 1, "padding": [1, 0, 1, 0]},
        {"type": "avg_pool", "pool_size": 2, "stride": 1, "padding": "same"},
        {"type": "flatten"}, {"type": "dense", "units": 12, "activation": "relu6"}, {"type": "norm"},
        {"type": "dropout", "rate": 0.2}, {"type": "activation", "function": "tanh"}],
        "classifier": {"initializer": "torch_default"}, "output": "softmax"},
}  # fmt: skip

# A chain of padded windows on an even-sized, all-negative input: each node is checked against
# numpy applied to its own input.
PADDING_CHAIN = {
    "version": 1, "input": {"height": 16, "width": 16, "channels": 3}, "classes": 2,
    "defaults": {"conv_bias": True, "kernel_l2": 1e-4},
    "stem": [
        {"type": "max_pool", "pool_size": 3, "stride": 1, "padding": [0, 2, 1, 1]},  # custom, -inf cells
        {"type": "max_pool", "pool_size": 3, "stride": 1, "padding": "same"},  # native same
        {"type": "conv", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "symmetric"},  # .pad + valid
        {"type": "conv", "filters": 4, "kernel_size": 4, "stride": 1, "padding": "same"},  # native, (1, 2)
        {"type": "avg_pool", "pool_size": 3, "stride": 1, "padding": [2, 0, 1, 1]},  # custom, real cells
        {"type": "avg_pool", "pool_size": 2, "stride": 1, "padding": "same"},  # native same, (0, 1)
        {"type": "avg_pool", "pool_size": 3, "stride": 1, "padding": 1, "count_padding": True},  # .pad + valid
        {"type": "max_pool", "pool_size": 3, "stride": 2, "padding": "symmetric"},  # custom: same would be (0, 1)
        {"type": "zero_pad", "padding": [1, 0, 2, 0]},
        {"type": "max_pool", "pool_size": 2, "stride": 2},  # valid
        {"type": "avg_pool", "pool_size": 2, "stride": 2, "padding": [1, 1, 0, 0]},  # custom
    ],
    "stages": [{"block": "basic", "filters": 4, "blocks": 1}],
}  # fmt: skip


def keras_applications_resnet50(size: int = 224) -> dict:
    """keras.applications.ResNet50(weights=None, include_top=True, classes=1000) as a spec."""
    stages = [
        {"block": "bottleneck", "blocks": n, "filters": f, "stride": s, "stride_placement": "first_1x1",
         "shortcut": {"kind": "projection", "norm": True, "order": "shortcut_first"}}
        for n, f, s in ((3, 256, 1), (4, 512, 2), (6, 1024, 2), (3, 2048, 2))
    ]  # fmt: skip
    return {
        "version": 1, "input": {"height": size, "width": size, "channels": 3}, "classes": 1000,
        "defaults": {"conv_bias": True, "padding": "same",
                     "norm": {"epsilon": 1.001e-5, "running_stats_decay": 0.99, "running_variance": "biased"}},
        "stem": [
            {"type": "zero_pad", "padding": 3},
            {"type": "conv", "filters": 64, "kernel_size": 7, "stride": 2, "padding": "valid"},
            {"type": "norm"}, {"type": "activation", "function": "relu"},
            {"type": "zero_pad", "padding": 1},
            {"type": "max_pool", "pool_size": 3, "stride": 2, "padding": "valid"},
        ],
        "stages": stages,
        "head": {"layers": [{"type": "global_avg_pool"}], "output": "softmax"},
    }  # fmt: skip


@pytest.fixture(scope="module")
def resnet20():
    arch = arch_of(RESNET20)
    return arch, BACKEND.build(arch)


@pytest.fixture(scope="module")
def zoo():
    arch = arch_of(ZOO)
    return arch, BACKEND.build(arch)


def images(arch, n=2, negative=False):
    x = RNG.normal(size=(n, *arch.graph.input.shape)).astype(np.float32)
    return -np.abs(x) - 0.5 if negative else x


# ---------------------------------------------------------------------- numpy references


def np_window(x, k, s, pad, op, count_padding=False):
    top, bottom, left, right = pad
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    real = np.pad(np.ones(x.shape[1:3]), ((top, bottom), (left, right)))
    ho, wo = (xp.shape[1] - k[0]) // s[0] + 1, (xp.shape[2] - k[1]) // s[1] + 1
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1])
            win = xp[:, rows, cols, :]
            if op == "max":
                out[:, i, j] = win.max(axis=(1, 2))
            else:
                out[:, i, j] = win.sum(axis=(1, 2)) / (k[0] * k[1] if count_padding else real[rows, cols].sum())
    return out


def np_conv(x, kernel, bias, s, pad):
    top, bottom, left, right = pad
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw = kernel.shape[:2]
    ho, wo = (xp.shape[1] - kh) // s[0] + 1, (xp.shape[2] - kw) // s[1] + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, i * s[0] : i * s[0] + kh, j * s[1] : j * s[1] + kw, :]
            out[:, i, j] = np.tensordot(win, kernel, axes=([1, 2, 3], [0, 1, 2])) + bias
    return out


# ---------------------------------------------------------------------- the backend object


def test_importing_the_backend_does_not_import_tensorflow():
    code = (
        "import sys, resnet_spec_keras\n"
        "from resnet_spec.backends import get_backend\n"
        "b = get_backend('keras')\n"
        "assert (b.name, b.suffix, b.framework_module) == ('keras', '.keras', 'tensorflow')\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_build_rejects_unknown_options(resnet20):
    with pytest.raises(BackendError, match="no build options but dtype"):
        BACKEND.build(resnet20[0], channels_first=True)
    with pytest.raises(BackendError, match="float32 or float64"):
        BACKEND.build(resnet20[0], dtype="float16")


# ---------------------------------------------------------------------- structure


def test_resnet20_names_shapes_and_counts(resnet20):
    arch, model = resnet20
    names = [layer.name for layer in model.layers]  # Keras lists layers by depth, not in graph order
    assert len(names) == len(arch.graph) and set(names) == {node.name for node in arch.graph}
    assert BACKEND.count_params(model) == (arch.params_trainable, arch.params_non_trainable)
    assert sum(BACKEND.count_params(model)) == model.count_params()
    outs = BACKEND.node_outputs(model, arch, images(arch))
    assert set(outs) == {node.name for node in arch.graph}
    for name, value in outs.items():
        assert value.shape[1:] == arch.shape_of(name), name
    summary = BACKEND.framework_summary(model)
    assert "stage2.block0.shortcut.pad (ChannelPadShortcut)" in summary and "Total params" in summary


def test_zoo_every_node_type(zoo):
    arch, model = zoo
    assert {type(node) for node in arch.graph} == set(g.OP_NAMES)  # the spec really covers every op
    extra = {layer.name for layer in model.layers} - {node.name for node in arch.graph}
    assert extra == {"stage3.block0.conv1.pad"}  # symmetric 3x3 stride 2 on an even map is not TF "same"
    assert BACKEND.count_params(model) == (arch.params_trainable, arch.params_non_trainable)
    outs = BACKEND.node_outputs(model, arch, images(arch, 3))
    for name, value in outs.items():
        assert value.shape[1:] == arch.shape_of(name), name
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_zoo_elementwise_semantics(zoo):
    arch, model = zoo
    o = BACKEND.node_outputs(model, arch, images(arch, 3))
    erf = np.vectorize(math.erf)
    x = o["stage3.block0.norm1"]
    np.testing.assert_allclose(o["stage3.block0.act1"], 0.5 * x * (1 + erf(x / math.sqrt(2))), atol=1e-6)  # exact gelu
    x = o["stem.norm1"]
    np.testing.assert_allclose(o["stem.act1"], x / (1 + np.exp(-x)), atol=1e-6)
    np.testing.assert_allclose(o["head.act1"], np.clip(o["head.dense1"], 0, 6), atol=1e-6)
    np.testing.assert_allclose(o["head.act2"], np.tanh(o["head.dropout1"]), atol=1e-6)
    np.testing.assert_allclose(
        o["stage1.block0.se.scale"], o["stage1.block0.norm2"] * o["stage1.block0.se.gate"], atol=1e-6
    )
    np.testing.assert_array_equal(o["stage1.block0.drop_path"], o["stage1.block0.se.scale"])  # identity at inference
    src = o["stage1.block0.out_act"][:, ::2, ::2, :]
    np.testing.assert_array_equal(o["stage2.block0.shortcut.pad"], np.pad(src, ((0, 0), (0, 0), (0, 0), (4, 4))))
    logits = o["head.classifier"].astype(np.float64)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(o["head.softmax"], softmax / softmax.sum(1, keepdims=True), atol=1e-6)


def test_padding_semantics_against_numpy():
    arch = arch_of(PADDING_CHAIN)
    model = BACKEND.build(arch)
    kinds = {name: type(model.get_layer(name)).__name__ for name in ("stem.maxpool1", "stem.maxpool2", "stem.avgpool1",
             "stem.avgpool2", "stem.avgpool3", "stem.maxpool3", "stem.avgpool4")}  # fmt: skip
    assert kinds == {
        "stem.maxpool1": "PaddedMaxPool2D", "stem.maxpool2": "MaxPooling2D", "stem.avgpool1": "PaddedAvgPool2D",
        "stem.avgpool2": "AveragePooling2D", "stem.avgpool3": "AveragePooling2D", "stem.maxpool3": "PaddedMaxPool2D",
        "stem.avgpool4": "PaddedAvgPool2D",
    }  # fmt: skip
    assert model.get_layer("stem.conv1").padding == "valid" and model.get_layer("stem.conv2").padding == "same"
    l2 = model.get_layer("stem.conv1").kernel_regularizer
    assert l2 is not None and math.isclose(l2.get_config()["l2"], 1e-4)
    assert len(model.losses) == sum(isinstance(n, (g.Conv2D, g.Dense)) for n in arch.graph)
    assert {"stem.conv1.pad", "stem.avgpool3.pad"} <= {layer.name for layer in model.layers}
    outs = BACKEND.node_outputs(model, arch, images(arch, 2, negative=True))
    checked = 0
    for node in arch.graph:
        if not node.name.startswith("stem."):
            continue
        x = outs[node.inputs[0]]
        if isinstance(node, g.MaxPool):
            want = np_window(x, node.pool_size, node.strides, node.padding, "max")
            zero_padded = np_window(np.pad(x, ((0, 0), node.padding[:2], node.padding[2:], (0, 0))), node.pool_size, node.strides, (0,) * 4, "max")  # fmt: skip
            if node.name == "stem.maxpool1":  # on negative inputs, zero padding would be wrong: the test can tell
                assert not np.allclose(want, zero_padded)
        elif isinstance(node, g.AvgPool):
            want = np_window(x, node.pool_size, node.strides, node.padding, "avg", node.count_padding)
        elif isinstance(node, g.Conv2D):
            kernel, bias = model.get_layer(node.name).get_weights()
            want = np_conv(x, kernel, bias, node.strides, node.padding)
        elif isinstance(node, g.ZeroPad):
            want = np.pad(x, ((0, 0), node.padding[:2], node.padding[2:], (0, 0)))
        else:
            continue
        np.testing.assert_allclose(outs[node.name], want, rtol=1e-5, atol=1e-5, err_msg=node.name)
        checked += 1
    assert checked == 11


# ---------------------------------------------------------------------- batch norm, drop path, initializers

TINY_BN = {
    "version": 1, "input": {"height": 3, "width": 3, "channels": 2}, "classes": 2,
    "stem": [{"type": "norm", "running_variance": "unbiased", "running_stats_decay": 0.9, "epsilon": 1e-5}],
    "stages": [{"block": "basic", "filters": 2, "blocks": 1}],
}  # fmt: skip


@pytest.mark.parametrize("variance", ["unbiased", "biased"])
def test_batch_norm_running_variance_on_36_cells(variance):
    spec = json.loads(json.dumps(TINY_BN))
    spec["stem"][0]["running_variance"] = variance
    arch = arch_of(spec)
    model = BACKEND.build(arch)
    layer = model.get_layer("stem.norm1")
    assert (type(layer).__name__ == "UnbiasedBatchNormalization") == (variance == "unbiased")
    x = RNG.normal(2.0, 3.0, size=(4, 3, 3, 2)).astype(np.float32)  # N*H*W = 36 per channel
    mean, biased = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    accumulated = biased * 36 / 35 if variance == "unbiased" else biased
    for run in (
        lambda v: model(v, training=True),
        # graph mode with an unknown batch size: n comes from the dynamic shape
        tf.function(lambda v: model(v, training=True), input_signature=[tf.TensorSpec((None, 3, 3, 2), tf.float32)]),
    ):
        layer.moving_mean.assign(np.zeros(2, np.float32))
        layer.moving_variance.assign(np.ones(2, np.float32))
        run(x)
        np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * accumulated, rtol=1e-5)
    # Normalization itself uses the biased variance in both cases.
    got = layer(x, training=True).numpy()
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(biased + 1e-5), atol=1e-4)


def test_drop_path_and_channel_pad_layers():
    from resnet_spec_keras.layers import ChannelPadShortcut, DropPath

    drop = DropPath(0.5, seed=3)
    x = np.ones((256, 2, 2, 3), np.float32)
    y = drop(x, training=True).numpy()
    per_sample = y.reshape(256, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0} and (per_sample == per_sample[:, :1]).all()
    assert 0.3 < per_sample[:, 0].mean() / 2 < 0.7
    np.testing.assert_array_equal(drop(x, training=False), x)
    pad = ChannelPadShortcut(2, 1, 3)
    x = RNG.normal(size=(2, 5, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(pad(x).numpy(), np.pad(x[:, ::2, ::2], ((0, 0), (0, 0), (0, 0), (1, 3))))
    assert pad.compute_output_shape((None, 5, 5, 2)) == (None, 3, 3, 6)


def test_initializers_by_name(zoo):
    from resnet_spec_keras.init import bias_initializer, kernel_initializer, known
    from resnet_spec_keras.layers import TorchBiasUniform

    assert known() == set(typing.get_args(g.InitializerName))
    fan_in = 3 * 3 * 64
    he = kernel_initializer("he_normal")((3, 3, 64, 64)).numpy()
    assert np.abs(he).max() <= 2 * math.sqrt(2 / fan_in) / 0.87962566103423978 + 1e-6  # truncated at 2 sigma
    plain = kernel_initializer("kaiming_normal")((3, 3, 64, 64)).numpy()
    assert abs(plain.std() / math.sqrt(2 / fan_in) - 1) < 0.03 and np.abs(plain).max() > 3 * math.sqrt(2 / fan_in)
    out = kernel_initializer("kaiming_normal_fan_out")((3, 3, 64, 128)).numpy()
    assert abs(out.std() / math.sqrt(2 / (9 * 128)) - 1) < 0.03
    torch_kernel = kernel_initializer("torch_default")((3, 3, 64, 64)).numpy()
    assert np.abs(torch_kernel).max() <= 1 / math.sqrt(fan_in) and np.abs(torch_kernel).max() > 0.95 / math.sqrt(fan_in)
    assert bias_initializer("he_normal", 10) == "zeros"
    bias = bias_initializer("torch_default", 27)
    assert TorchBiasUniform.from_config(bias.get_config()).fan_in == 27
    _, model = zoo  # torch_default reaches the layers: kernel and a non-zero bias within 1/sqrt(fan_in)
    kernel, bias_values = model.get_layer("stem.conv1").get_weights()
    assert np.abs(kernel).max() <= 1 / math.sqrt(27) and np.abs(bias_values).max() <= 1 / math.sqrt(27)
    assert np.abs(bias_values).min() > 0
    assert model.get_layer("head.classifier").get_weights()[1].any()


# ---------------------------------------------------------------------- external references


def test_matches_keras_applications_resnet50_224():
    arch = arch_of(keras_applications_resnet50(224))
    ours = BACKEND.build(arch)
    ref = keras.applications.ResNet50(weights=None, include_top=True, input_shape=(224, 224, 3), classes=1000)
    assert ours.count_params() == ref.count_params() == 25_636_712
    assert BACKEND.count_params(ours) == (arch.params_trainable, arch.params_non_trainable)
    mine = [layer for layer in ours.layers if layer.weights]
    theirs = [layer for layer in ref.layers if layer.weights]
    assert [[tuple(w.shape) for w in a.weights] for a in mine] == [[tuple(w.shape) for w in b.weights] for b in theirs]
    assert [type(a).__name__ for a in mine] == [type(b).__name__ for b in theirs]
    for a, b in zip(mine, theirs):
        a.set_weights(b.get_weights())
    x = RNG.normal(size=(2, 224, 224, 3)).astype(np.float32)
    outs = BACKEND.node_outputs(ours, arch, x)
    np.testing.assert_allclose(outs["head.softmax"], ref(x, training=False).numpy(), rtol=0, atol=1e-5)
    features = keras.Model(ref.input, ref.get_layer("avg_pool").output)(x, training=False).numpy()
    np.testing.assert_allclose(outs["head.pool1"], features, rtol=1e-5, atol=1e-5)


def test_matches_hand_written_keras_resnet20(resnet20):
    arch, ours = resnet20
    module = reference_module()
    assert build_architecture(module.resnet_v1_spec(20)).hash == arch.hash
    ref = module.resnet_v1(20)
    assert ours.count_params() == ref.count_params() == arch.params_trainable + arch.params_non_trainable
    ref.set_weights(ours.get_weights())  # same weight order: layers are listed as the classic code lists them
    x = images(arch, 4)
    np.testing.assert_allclose(ours(x, training=False).numpy(), ref(x, training=False).numpy(), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- saving and loading


def rewrite_meta(src: Path, dst: Path, change) -> None:
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "resnet_spec.json":
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            new.writestr(item, data)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),  # json.loads recurses: RecursionError
        (b" " * 2_000_000 + b"{}", "larger than"),  # compressed to a few kB: refused before inflating
    ],
)
def test_hostile_spec_member_is_a_backend_error(tmp_path, member, message):
    path = tmp_path / "hostile.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("resnet_spec.json", member)
    with pytest.raises(BackendError, match=message):
        BACKEND.load(path)


def test_save_load_round_trip_and_refusals(zoo, tmp_path):
    arch, model = zoo
    path = tmp_path / "zoo.keras"
    BACKEND.save(model, arch, ZOO, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo.keras"]  # no temporary file left behind
    with zipfile.ZipFile(path) as archive:
        assert {"config.json", "model.weights.h5", "resnet_spec.json"} <= set(archive.namelist())
    loaded, meta = BACKEND.load(path)
    assert meta["hash"] == arch.hash and meta["spec"] == ZOO
    x = images(arch, 3)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert type(loaded.get_layer("stem.norm1")).__name__ == "UnbiasedBatchNormalization"

    tampered = tmp_path / "tampered.keras"
    rewrite_meta(path, tampered, lambda m: m.update(hash="sha256:" + "0" * 64))
    with pytest.raises(BackendError, match="hash mismatch"):
        BACKEND.load(tampered)
    rewrite_meta(path, tampered, lambda m: m["spec"].update(classes=6))  # spec changed, hash kept
    with pytest.raises(BackendError, match="hash mismatch"):
        BACKEND.load(tampered)
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(plain)
    with pytest.raises(BackendError, match="not saved by resnet-spec"):
        BACKEND.load(plain)
    with pytest.raises(BackendError, match=".keras"):
        BACKEND.save(model, arch, ZOO, tmp_path / "zoo.h5")
    with pytest.raises(BackendError, match="hash mismatch"):
        BACKEND.save(model, arch, RESNET20, tmp_path / "other.keras")


FRESH_LOAD = textwrap.dedent(
    """
    import sys, numpy as np, keras
    path, x_path, out_path = sys.argv[1:]
    try:
        keras.models.load_model(path, safe_mode=True)
        print("PLAIN: loaded")
    except Exception as exc:
        print("PLAIN:", type(exc).__name__, "about resnet_spec_keras" if "resnet_spec_keras.layers" in str(exc) else str(exc)[:300])
    import resnet_spec_keras.layers  # registers the resnet_spec>... classes
    model = keras.models.load_model(path, safe_mode=True)
    np.save(out_path, keras.ops.convert_to_numpy(model(np.load(x_path), training=False)))
    print("REGISTERED: loaded")
    """
)


def test_fresh_process_safe_mode_load(zoo, tmp_path):
    arch, model = zoo
    path = tmp_path / "zoo.keras"
    BACKEND.save(model, arch, ZOO, path)
    x = images(arch, 2)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-c", FRESH_LOAD, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    run = subprocess.run(args, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # Keras 3 imports a saved class's module by itself only for keras packages; registered
    # classes from elsewhere must be imported (registered) before load_model.
    assert "PLAIN: TypeError about resnet_spec_keras" in run.stdout, run.stdout
    assert "REGISTERED: loaded" in run.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model(x, training=False).numpy())


# ---------------------------------------------------------------------- deep networks


def test_recursion_limit_is_restored(resnet20):
    before = sys.getrecursionlimit()
    BACKEND.build(resnet20[0])
    assert sys.getrecursionlimit() == before


def _slow_requested(config) -> bool:
    return bool(os.environ.get("RESNET_SPEC_SLOW")) or "slow" in (config.getoption("-m") or "")


@pytest.mark.slow
def test_resnet1202_builds_saves_and_loads(tmp_path, request):
    if not _slow_requested(request.config):
        pytest.skip("slow (about 1-2 minutes): set RESNET_SPEC_SLOW=1 or select -m slow")
    spec = json.loads(json.dumps(RESNET20))
    for stage in spec["stages"]:
        stage["blocks"] = 200
    arch = arch_of(spec)
    timings = {}
    start = time.perf_counter()
    model = BACKEND.build(arch)
    timings["build"] = time.perf_counter() - start
    assert len(model.layers) == len(arch.graph) > 4000
    assert BACKEND.count_params(model) == (arch.params_trainable, arch.params_non_trainable)
    path = tmp_path / "resnet1202.keras"
    start = time.perf_counter()
    BACKEND.save(model, arch, spec, path)
    timings["save"] = time.perf_counter() - start
    start = time.perf_counter()
    loaded, _ = BACKEND.load(path)
    timings["load"] = time.perf_counter() - start
    x = images(arch, 1)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())
    print("ResNet-1202 seconds:", {k: round(v, 1) for k, v in timings.items()})


# ---------------------------------------------------------------------- weights and the parity probe
# (the cross-framework checks are tests/test_parity.py; these check the Keras side alone against
# NumPy and the WeightAccess docstring)

SMALL = {
    "version": 1, "input": {"height": 8, "width": 8, "channels": 3}, "classes": 5,
    "defaults": {"conv_bias": True, "kernel_l2": 0.05},
    "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 8},
               {"block": "basic", "blocks": 1, "filters": 16, "stride": 2, "shortcut": "projection"}],
    "head": {"layers": [{"type": "global_avg_pool"}, {"type": "dropout", "rate": 0.5}], "output": "softmax"},
}  # fmt: skip


def _loaded(arch, weights):
    model = BACKEND.build(arch)
    BACKEND.set_weights(model, arch, weights)
    return model


def _batches(arch, count, n=2, scale=1.0):
    rng = np.random.default_rng(7)
    return [(scale * rng.standard_normal((n, *arch.graph.input.shape)).astype(np.float32),
             rng.integers(0, arch.spec.classes, n)) for _ in range(count)]  # fmt: skip


def test_weights_round_trip_by_name_and_refusals(zoo):
    from resnet_spec.weights import initial_weights, shapes

    arch, _ = zoo
    start = initial_weights(arch, 3)
    model = _loaded(arch, start)
    got = BACKEND.get_weights(model, arch)
    assert {n: {k: v.shape for k, v in e.items()} for n, e in got.items()} == shapes(arch)
    for node, entry in start.items():
        for key, value in entry.items():
            np.testing.assert_array_equal(got[node][key], value, err_msg=f"{node}.{key}")
    assert set(got["stem.norm1"]) == {"gamma", "beta", "moving_mean", "moving_variance"}
    missing = {n: dict(e) for n, e in start.items()}
    del missing["stem.norm1"]["moving_mean"]
    with pytest.raises(BackendError, match="stem.norm1"):
        BACKEND.set_weights(model, arch, missing)
    wrong = {n: dict(e) for n, e in start.items()}
    wrong["stem.conv1"]["kernel"] = wrong["stem.conv1"]["kernel"][..., :1]
    with pytest.raises(BackendError, match="stem.conv1.kernel"):
        BACKEND.set_weights(model, arch, wrong)
    with pytest.raises(BackendError, match="no.such"):
        BACKEND.set_weights(model, arch, {**start, "no.such": {}})
    np.testing.assert_array_equal(
        BACKEND.get_weights(model, arch)["stem.conv1"]["kernel"], start["stem.conv1"]["kernel"]
    )


def test_probe_walk_is_the_functional_model(zoo, resnet20):
    """The probe's re-walk over the model's layers computes what the functional model does:
    every node in inference mode (ZOO: every node type and mapping), and in training mode with
    batch statistics (ResNet-20, no dropout)."""
    from resnet_spec_keras.probe import forward

    arch, model = zoo
    x = images(arch, 3)
    walked = forward(model, arch, x, norms_training=False, dropout=False)
    reference = BACKEND.node_outputs(model, arch, x)
    for name, value in reference.items():
        np.testing.assert_allclose(walked[name].numpy(), value, rtol=1e-6, atol=1e-6, err_msg=name)
    arch, _ = resnet20
    a, b = BACKEND.build(arch), BACKEND.build(arch)
    b.set_weights(a.get_weights())
    x = images(arch, 2)
    walked = forward(a, arch, x, norms_training=True, dropout=True)["head.classifier"].numpy()
    np.testing.assert_allclose(walked, b(x, training=True).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        a.get_layer("stem.norm1").moving_mean.numpy(), b.get_layer("stem.norm1").moving_mean.numpy()
    )


def test_probe_semantics_against_numpy():
    """Loss = CE of the logits (not the softmax output) + sum kernel_l2 * sum(w^2); dropout is the
    identity, norms use batch statistics and update their moving statistics once per forward;
    SGD b = m*b + g + wd*w (kernels), w -= lr*b, step k on batches[k % len]."""
    from resnet_spec.weights import initial_weights

    arch = arch_of(SMALL)
    start = initial_weights(arch, 0)
    batches = _batches(arch, 2)
    lr, mu, wd = 0.1, 0.9, 0.01
    probe = BACKEND.train_probe(
        _loaded(arch, start), arch, batches, steps=3, learning_rate=lr, momentum=mu, weight_decay=wd
    )

    out = probe.train_outputs
    assert set(out) == {node.name for node in arch.graph}
    np.testing.assert_array_equal(out["head.dropout1"], out["head.pool1"])
    logits = out["head.classifier"].astype(np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(2), batches[0][1]].mean()
    l2 = sum(0.05 * (e["kernel"].astype(np.float64) ** 2).sum() for e in start.values() if "kernel" in e)
    assert probe.losses[0] == pytest.approx(ce + l2, rel=1e-6) and len(probe.losses) == 3
    conv = out["stem.conv1"].reshape(-1, 8).astype(np.float64)
    norm = arch.graph["stem.norm1"]
    np.testing.assert_allclose(
        probe.stats_after_forward["stem.norm1"]["moving_mean"], (1 - norm.decay) * conv.mean(0), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(probe.stats_after_forward["stem.norm1"]["moving_variance"],
                               norm.decay + (1 - norm.decay) * conv.var(0), rtol=1e-5)  # fmt: skip
    normalized = (conv - conv.mean(0)) / np.sqrt(conv.var(0) + norm.epsilon)
    np.testing.assert_allclose(out["stem.norm1"].reshape(-1, 8), normalized, rtol=1e-4, atol=1e-5)
    assert set(probe.gradients["stem.norm1"]) == {"gamma", "beta"}
    assert set(probe.gradients["stem.conv1"]) == {"kernel", "bias"}

    # SGD recursion, checked by chaining one-step probes (each gives the gradient at its start).
    def one(weights, batch):
        return BACKEND.train_probe(
            _loaded(arch, weights), arch, [batch], steps=1, learning_rate=lr, momentum=mu, weight_decay=wd
        )

    weights, buffers = start, {}
    for k in range(3):
        step = one(weights, batches[k % 2])
        following = {}
        for node, entry in weights.items():
            following[node] = dict(step.weights_after[node])  # moving statistics: from the forward
            for key, grad in step.gradients[node].items():
                direction = grad + wd * entry[key] if key == "kernel" else grad
                buffers[node, key] = mu * buffers.get((node, key), 0.0) + direction
                following[node][key] = entry[key] - lr * buffers[node, key]
        weights = following
    for node, entry in weights.items():
        for key, value in entry.items():
            np.testing.assert_allclose(
                probe.weights_after[node][key], value, rtol=1e-5, atol=1e-6, err_msg=f"{node}.{key}"
            )


def test_probe_l2_softmax_and_zero_steps():
    from resnet_spec.weights import initial_weights

    logits_spec = {**SMALL, "head": {**SMALL["head"], "output": "logits"}}
    plain = arch_of({**logits_spec, "defaults": {"conv_bias": True}})
    arch = arch_of(SMALL)
    start = initial_weights(arch, 0)
    batch = _batches(arch, 1, scale=10.0)  # saturates the softmax
    kwargs = {"steps": 1, "learning_rate": 0.0, "momentum": 0.0, "weight_decay": 0.0}
    with_l2 = BACKEND.train_probe(_loaded(arch, start), arch, batch, **kwargs)
    without = BACKEND.train_probe(_loaded(plain, start), plain, batch, **kwargs)
    kernel = start["stage1.block0.conv1"]["kernel"]
    np.testing.assert_allclose(with_l2.gradients["stage1.block0.conv1"]["kernel"] - without.gradients["stage1.block0.conv1"]["kernel"],
                               2 * 0.05 * kernel, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(
        with_l2.gradients["stem.conv1"]["bias"], without.gradients["stem.conv1"]["bias"], atol=1e-7
    )
    l2 = sum(0.05 * float((e["kernel"].astype(np.float64) ** 2).sum()) for e in start.values() if "kernel" in e)
    assert with_l2.losses[0] - l2 == pytest.approx(without.losses[0], rel=1e-5)
    assert np.abs(without.gradients["head.classifier"]["kernel"]).max() > 0  # no saturated-softmax zero gradient
    zero = BACKEND.train_probe(
        _loaded(arch, start), arch, batch, steps=0, learning_rate=0.1, momentum=0.9, weight_decay=0.1
    )
    assert zero.losses == [] and zero.gradients
    np.testing.assert_array_equal(zero.weights_after["stem.conv1"]["kernel"], start["stem.conv1"]["kernel"])
    np.testing.assert_array_equal(
        zero.weights_after["stem.norm1"]["moving_mean"], zero.stats_after_forward["stem.norm1"]["moving_mean"]
    )


def test_parity_runs_keras_against_itself():
    """The orchestration end to end on the Keras side (the Keras-vs-PyTorch checks are
    tests/test_parity.py): everything present, everything identical."""
    from resnet_spec import parity

    report = parity.run(arch_of(ZOO), backends=("keras", "keras"), seed=0, steps=2)
    assert report.ok and set(report.checks()) == {"eval", "train_forward", "norm_stats", "gradients", "weights_after"}
    assert all(d.max_abs == 0.0 for d in report.differences)


def test_float64_build_for_parity_checks():
    """dtype="float64" builds every layer in float64 (variables, computation, moving statistics,
    the probe's update): parity of deep networks needs it, because float32 cannot meet 1e-4 on
    their batch-norm-conditioned gradients in any framework."""
    from resnet_spec.weights import initial_weights

    arch = arch_of(ZOO)
    start = initial_weights(arch, 1)
    model = BACKEND.build(arch, dtype="float64")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    BACKEND.set_weights(model, arch, start)
    assert {v.dtype for v in model.weights} == {"float64"}
    assert BACKEND.get_weights(model, arch)["stem.conv1"]["kernel"].dtype == np.float64
    batches = _batches(arch, 2)
    wide = BACKEND.train_probe(model, arch, batches, steps=2, learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    narrow = BACKEND.train_probe(
        _loaded(arch, start), arch, batches, steps=2, learning_rate=0.1, momentum=0.9, weight_decay=0.01
    )
    assert wide.train_outputs["head.classifier"].dtype == np.float64
    assert wide.losses == pytest.approx(narrow.losses, rel=1e-5)
    for node, entry in narrow.weights_after.items():
        for key, value in entry.items():
            np.testing.assert_allclose(
                wide.weights_after[node][key], value, rtol=1e-4, atol=1e-5, err_msg=f"{node}.{key}"
            )
    x = images(arch, 2)
    np.testing.assert_allclose(BACKEND.node_outputs(model, arch, x)[arch.graph.output],
                               model(x.astype(np.float64), training=False).numpy(), rtol=1e-12)  # fmt: skip
