"""The PyTorch backend: exact node semantics, naming, counting, saving, tracing, and equality with
hand-written torchvision-style ResNets (see benchmarks/torch_reference.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from resnet_spec_torch import TorchBackend
from resnet_spec_torch.init import KERNEL_INITIALIZERS, TRUNCATED_STD, initialize

from resnet_spec.backends import Backend, BackendError, get_backend
from resnet_spec.pipeline import Architecture, validate

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
_ref_spec = importlib.util.spec_from_file_location("torch_reference", ROOT / "benchmarks" / "torch_reference.py")
R = importlib.util.module_from_spec(_ref_spec)  # type: ignore[arg-type]
_ref_spec.loader.exec_module(R)  # type: ignore[union-attr]

BACKEND = TorchBackend()

RESNET20_YAML = """\
version: 1
name: resnet20
input: {height: 32, width: 32, channels: 3}
classes: 10
stem:
  - {type: conv, filters: 16}
  - {type: norm}
  - {type: activation}
stages:
  - {block: basic, filters: 16, stride: 1, blocks: 3, shortcut: zero_pad}
  - {block: basic, filters: 32, stride: 2, blocks: 3, shortcut: zero_pad}
  - {block: basic, filters: 64, stride: 2, blocks: 3, shortcut: zero_pad}
"""

# Every node kind, asymmetric "same" padding everywhere it can occur, a non-square input,
# center/scale switched off, every block kind, SE, stochastic depth, and a head on vectors.
ZOO_YAML = """\
version: 1
input: {height: 32, width: 48, channels: 3}
classes: 5
blocks:
  twoconv:
    layers:
      - {type: conv, filters_ratio: 0.5, kernel_size: 1}
      - {type: norm, center: false}
      - {type: activation, function: gelu}
      - {type: conv, stride: block, padding: same}
      - {type: norm, scale: false}
    shortcut: avg_pool_projection
stem:
  - {type: zero_pad, padding: [2, 2, 0, 0]}
  - {type: conv, filters: 8, stride: 2, padding: same, bias: true, initializer: glorot_uniform}
  - {type: norm}
  - {type: activation, function: relu6}
  - {type: max_pool, pool_size: 3, stride: 2, padding: same}
stages:
  - {block: basic, filters: 16, blocks: 1, shortcut: zero_pad, dropout_between_convs: 0.1,
     squeeze_excite: {reduction: 4}}
  - {block: bottleneck, filters: 32, stride: 2, blocks: 2, groups: 2, squeeze_excite: {reduction: 4},
     stochastic_depth_rate: 0.2, zero_init_last_norm: true, shortcut: avg_pool_projection,
     defaults: {activation: silu}}
  - {block: preact_basic, filters: 32, stride: 2, blocks: 1,
     shortcut: {kind: projection, source: block_input}, defaults: {norm: {center: false}}}
  - {block: preact_bottleneck, filters: 64, blocks: 1, stride_placement: first_1x1,
     shortcut: {kind: projection, norm: false}, defaults: {norm: {scale: false}, activation: tanh}}
  - {block: twoconv, filters: 32, stride: 2, blocks: 1}
head:
  layers:
    - {type: max_pool, pool_size: 2, stride: 1, padding: same}
    - {type: avg_pool, pool_size: 2, stride: 1, padding: same}
    - {type: flatten}
    - {type: dense, units: 12, activation: sigmoid}
    - {type: norm}
    - {type: dropout, rate: 0.3}
  output: softmax
"""


def arch_of(source: object) -> Architecture:
    result = validate(source)  # type: ignore[arg-type]
    assert result.ok, result.report.diagnostics
    return result.architecture  # type: ignore[return-value]


def stem_spec(layers: list[dict], size: int = 8, channels: int = 3) -> dict:
    """A tiny network whose stem holds the layers under test (the stage and head are filler)."""
    return {
        "version": 1, "input": {"height": size, "width": size, "channels": channels}, "classes": 2,
        "stem": layers, "stages": [{"filters": 4, "blocks": 1, "shortcut": "projection"}],
    }  # fmt: skip


def images(arch: Architecture, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *arch.graph.input.shape)).astype(np.float32)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def zoo() -> tuple[Architecture, torch.nn.Module]:
    arch = arch_of(ZOO_YAML)
    return arch, BACKEND.build(arch, seed=0)


# ---------------------------------------------------------------------- registry and naming


def test_registry_and_lazy_import() -> None:
    assert isinstance(get_backend("torch"), Backend)
    code = "import sys, resnet_spec_torch; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resnet20_counts_and_names() -> None:
    arch = arch_of(RESNET20_YAML)
    model = BACKEND.build(arch)
    assert BACKEND.count_params(model) == (arch.params_trainable, arch.params_non_trainable) == (269_722, 1_376)
    assert isinstance(model.stage2.block0.conv1, torch.nn.Conv2d)
    names = [n.name for n in arch.graph if n.name != "input"]
    assert [name for name, _ in model.named_modules() if name in set(names)] == names
    weights = [k for k in model.state_dict() if k.endswith("weight")]
    assert weights[:3] == ["stem.conv1.weight", "stem.norm1.weight", "stage1.block0.conv1.weight"]
    text = BACKEND.framework_summary(model)
    assert "stage2" in text and "Trainable params: 269,722" in text and "Non-trainable params: 1,376" in text


def test_zoo_shapes_counts_and_outputs(zoo) -> None:
    arch, model = zoo
    assert BACKEND.count_params(model) == (arch.params_trainable, arch.params_non_trainable)
    x = images(arch)
    outs = BACKEND.node_outputs(model, arch, x)
    assert set(outs) == {n.name for n in arch.graph}
    assert np.array_equal(outs["input"], x)
    for name, value in outs.items():
        assert value.shape == (2, *arch.shape_of(name)), name
    assert model.training  # node_outputs restores the mode
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(outs[arch.graph.output], model(nchw(x)).numpy(), atol=1e-6)
    model.train()
    before = outs["head.flatten1"]  # (h, w, c) order: the NHWC reshape of its input
    assert np.array_equal(before, outs["head.avgpool1"].reshape(2, -1))


def test_copies_and_functional_call() -> None:
    """The walk finds modules through the tree, so deep copies and DataParallel-style replicas
    (a shallow copy whose children are swapped) run their own modules and parameters."""
    import copy

    arch = arch_of(RESNET20_YAML)
    model = BACKEND.build(arch, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        twin = copy.deepcopy(model)
        twin.head.classifier.bias.add_(1.0)
        torch.testing.assert_close(twin(x), expected + 1.0)
        replica = copy.copy(model)
        replica._modules = dict(model._modules, head=copy.deepcopy(model.head))
        replica.head.classifier.bias.add_(2.0)
        torch.testing.assert_close(replica(x), expected + 2.0)
        torch.testing.assert_close(model(x), expected)
        params = {k: v + 0.0 for k, v in model.state_dict().items()}
        params["head.classifier.bias"] = params["head.classifier.bias"] + 3.0
        torch.testing.assert_close(torch.func.functional_call(model, params, (x,)), expected + 3.0)


def test_zoo_trains(zoo) -> None:
    arch, model = zoo
    model.train()
    y = model(nchw(images(arch, n=4)))
    y[:, 0].sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_center_scale_and_zero_init(zoo) -> None:
    _, model = zoo
    assert model.stage3.block0.norm1.bias is None and model.stage3.block0.norm1.weight is not None
    assert model.stage4.block0.norm1.weight is None and model.stage4.block0.norm1.bias is not None
    assert torch.all(model.stage2.block1.norm3.weight == 0)
    assert torch.all(model.stage2.block1.norm2.weight == 1)


# ---------------------------------------------------------------------- padding and pooling


def test_asymmetric_same_conv_matches_manual_padding() -> None:
    arch = arch_of(stem_spec([{"type": "conv", "filters": 4, "stride": 2, "padding": "same"}]))
    assert arch.graph["stem.conv1"].padding == (0, 1, 0, 1)
    conv = BACKEND.build(arch).stem.conv1
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ours = conv(x)
        manual = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
        symmetric = F.conv2d(x, conv.weight, stride=2, padding=1)
    torch.testing.assert_close(ours, manual, rtol=0, atol=1e-6)
    assert ours.shape == symmetric.shape and (ours - symmetric).abs().max() > 1e-2


def pool_reference(x: np.ndarray, k: int, s: int, pad: tuple[int, int, int, int], how: str) -> np.ndarray:
    """Windows over the real cells of a (H, W) map; 'max', 'real' mean, or 'full' window mean."""
    top, bottom, left, right = pad
    h, w = x.shape
    out = np.zeros(((h + top + bottom - k) // s + 1, (w + left + right - k) // s + 1), np.float64)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            r0, c0 = i * s - top, j * s - left
            cells = x[max(r0, 0) : r0 + k, max(c0, 0) : c0 + k]
            out[i, j] = {"max": cells.max(), "real": cells.mean(), "full": cells.sum() / (k * k)}[how]
    return out


@pytest.mark.parametrize(
    "layer, how",
    [
        ({"type": "max_pool", "pool_size": 3, "stride": 2, "padding": "same"}, "max"),  # (0, 1, 0, 1)
        ({"type": "max_pool", "pool_size": 3, "stride": 1, "padding": 2}, "max"),  # beyond PyTorch's k/2 limit
        ({"type": "max_pool", "pool_size": 3, "stride": 2, "padding": 1}, "max"),  # native
        ({"type": "avg_pool", "pool_size": 3, "stride": 2, "padding": "same"}, "real"),
        ({"type": "avg_pool", "pool_size": 3, "stride": 1, "padding": "same"}, "real"),  # symmetric, native
        ({"type": "avg_pool", "pool_size": 2, "stride": 2, "padding": [1, 0, 1, 0]}, "real"),
        ({"type": "avg_pool", "pool_size": 3, "stride": 2, "padding": "same", "count_padding": True}, "full"),
        ({"type": "avg_pool", "pool_size": 3, "stride": 1, "padding": 1, "count_padding": True}, "full"),
    ],
)
def test_pooling_matches_hand_computation(layer: dict, how: str) -> None:
    arch = arch_of(stem_spec([layer], channels=1))
    pool = BACKEND.build(arch).stem.get_submodule(f"{layer['type'].replace('_', '')}1")
    x = -1.0 - np.random.default_rng(1).random((8, 8))  # all negative: zero padding would win a max
    with torch.no_grad():
        ours = pool(torch.from_numpy(x).float()[None, None])[0, 0].double().numpy()
    node = arch.graph[f"stem.{layer['type'].replace('_', '')}1"]
    expected = pool_reference(x, node.pool_size[0], node.strides[0], node.padding, how)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert ours.shape == arch.shape_of(node.name)[:2]
    if how == "max":
        assert ours.max() < 0


# ---------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("kind", ["biased", "unbiased"])
def test_running_variance_update(kind: str) -> None:
    norm = {"type": "norm", "running_stats_decay": 0.8, "epsilon": 1e-3, "running_variance": kind}
    arch = arch_of(stem_spec([norm], size=6, channels=2))
    bn = BACKEND.build(arch).stem.norm1.train()
    assert bn.momentum == pytest.approx(0.2) and bn.eps == 1e-3
    old_var, old_mean = torch.tensor([0.5, 2.0]), torch.tensor([0.1, -0.3])
    bn.running_var.copy_(old_var)
    bn.running_mean.copy_(old_mean)
    x = torch.randn(1, 2, 6, 6) * 3 + 1  # N*H*W = 36: 36/35 is visible
    y = bn(x)
    flat = x.permute(1, 0, 2, 3).reshape(2, -1).double()
    batch_var = flat.var(dim=1, unbiased=kind == "unbiased")
    expected_var = 0.8 * old_var.double() + 0.2 * batch_var
    torch.testing.assert_close(bn.running_var.double(), expected_var, rtol=1e-6, atol=0)
    torch.testing.assert_close(
        bn.running_mean.double(), 0.8 * old_mean.double() + 0.2 * flat.mean(1), rtol=1e-6, atol=1e-7
    )
    other = 0.8 * old_var.double() + 0.2 * flat.var(dim=1, unbiased=kind != "unbiased")
    assert (bn.running_var.double() - other).abs().max() > 1e-3  # the two conventions are told apart
    # Normalization itself uses the biased batch variance in both cases.
    normalized = (flat - flat.mean(1, keepdim=True)) / torch.sqrt(flat.var(1, unbiased=False, keepdim=True) + 1e-3)
    torch.testing.assert_close(y.permute(1, 0, 2, 3).reshape(2, -1).double(), normalized, rtol=1e-5, atol=1e-5)
    (y * torch.randn_like(y)).sum().backward()  # the buffer correction must not break autograd
    assert bn.weight.grad is not None and int(bn.num_batches_tracked) == 1


# ---------------------------------------------------------------------- initializers and options


def _fresh_conv(bias: bool = True) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(64, 256, 3, bias=bias)  # fan_in 576, fan_out 2304


@pytest.mark.parametrize(
    "name, std, bound",
    [
        ("he_normal", (2 / 576) ** 0.5, 2 * (2 / 576) ** 0.5 / TRUNCATED_STD),
        ("he_uniform", (2 / 576) ** 0.5, (6 / 576) ** 0.5),
        ("kaiming_normal", (2 / 576) ** 0.5, None),
        ("kaiming_normal_fan_out", (2 / 2304) ** 0.5, None),
        ("glorot_uniform", (2 / 2880) ** 0.5, (6 / 2880) ** 0.5),
        ("glorot_normal", (2 / 2880) ** 0.5, 2 * (2 / 2880) ** 0.5 / TRUNCATED_STD),
        ("lecun_normal", (1 / 576) ** 0.5, 2 * (1 / 576) ** 0.5 / TRUNCATED_STD),
    ],
)
def test_initializer_statistics(name: str, std: float, bound: float | None) -> None:
    torch.manual_seed(0)
    conv = _fresh_conv()
    initialize(conv, name)
    w = conv.weight.detach()
    assert w.std().item() == pytest.approx(std, rel=0.02)
    if bound is not None:
        assert w.abs().max().item() <= bound + 1e-7
        assert w.abs().max().item() > 0.9 * bound  # the whole range is used
    assert torch.all(conv.bias == 0)


def test_initializer_names_complete_and_torch_default() -> None:
    from typing import get_args

    from resnet_spec.graph import InitializerName

    assert set(KERNEL_INITIALIZERS) | {"torch_default"} == set(get_args(InitializerName))
    # torch_default draws what nn.Conv2d's own constructor draws, from the same random stream.
    layer = {"type": "conv", "filters": 4, "bias": True, "initializer": "torch_default"}
    torch.manual_seed(3)
    ours = BACKEND.build(arch_of(stem_spec([layer]))).stem.conv1
    torch.manual_seed(3)
    theirs = torch.nn.Conv2d(3, 4, 3, bias=True)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    assert isinstance(ours, torch.nn.Conv2d)
    initialize(ours, "zeros")
    assert ours.weight.abs().sum() == 0 and ours.bias.abs().sum() == 0


def test_seeding_and_build_options() -> None:
    arch = arch_of(RESNET20_YAML)
    a, b, c = (BACKEND.build(arch, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.stem.conv1.weight, c.stem.conv1.weight)
    torch.manual_seed(5)
    d = BACKEND.build(arch)
    torch.manual_seed(5)
    assert torch.equal(d.stem.conv1.weight, BACKEND.build(arch).stem.conv1.weight)
    with pytest.raises(BackendError, match="unknown torch build option"):
        BACKEND.build(arch, colour="red")


def test_frozen_parameters_count_as_non_trainable() -> None:
    arch = arch_of(RESNET20_YAML)
    model = BACKEND.build(arch)
    model.stem.conv1.weight.requires_grad_(False)
    assert BACKEND.count_params(model) == (arch.params_trainable - 432, arch.params_non_trainable + 432)


def test_drop_path() -> None:
    from resnet_spec_torch.layers import DropPath

    layer = DropPath(0.5).train()
    torch.manual_seed(0)
    y = layer(torch.ones(64, 3, 2, 2))
    per_sample = y.flatten(1)
    assert set(per_sample[:, 0].tolist()) == {0.0, 2.0}
    assert torch.all(per_sample == per_sample[:, :1])  # whole samples are dropped or kept
    assert torch.equal(layer.eval()(y), y)


# ---------------------------------------------------------------------- saving and loading


def test_save_load_round_trip_and_tampering(tmp_path: Path) -> None:
    data = R.cifar_spec(8)
    arch = arch_of(data)
    model = BACKEND.build(arch, seed=0)
    model.train()
    model(torch.randn(4, 3, 32, 32))  # move the running statistics away from their start
    path = tmp_path / "m.pt"
    BACKEND.save(model, arch, data, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # nothing half-written left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "resnet-spec/torch" and raw["format_version"] == 2 and raw["hash"] == arch.hash
    loaded, meta = BACKEND.load(path)
    assert meta["hash"] == arch.hash and meta["spec"] == data and "state_dict" not in meta
    x = images(arch)
    np.testing.assert_array_equal(
        BACKEND.node_outputs(loaded, arch, x)[arch.graph.output],
        BACKEND.node_outputs(model, arch, x)[arch.graph.output],
    )
    raw["spec"]["classes"] = 11  # the weights no longer fit this spec
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(BackendError, match="refusing"):
        BACKEND.load(tmp_path / "edited.pt")
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(BackendError, match="not a resnet-spec"):
        BACKEND.load(tmp_path / "foreign.pt")


# ---------------------------------------------------------------------- memory format and tracing


def test_channels_last_and_export(zoo) -> None:
    arch, model = zoo
    model.eval()
    x = nchw(images(arch))
    with torch.no_grad():
        expected = model(x)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected, rtol=1e-5, atol=1e-6)
        assert "stage2.block0.conv2.weight" in exported.state_dict
        channels_last = BACKEND.build(arch, channels_last=True)
        channels_last.load_state_dict(model.state_dict())
        out = channels_last.eval()(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    model.train()


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own import
def test_torch_compile() -> None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except (ImportError, RuntimeError) as exc:  # inductor on CPU needs a C++ compiler
        pytest.skip(f"torch.compile's inductor backend is unavailable here: {exc}")
    layers = [
        {"type": "conv", "filters": 8, "stride": 2, "padding": "same"},
        {"type": "norm"},
        {"type": "activation"},
        {"type": "avg_pool", "pool_size": 3, "stride": 2, "padding": "same"},
    ]
    arch = arch_of(stem_spec(layers))
    model = BACKEND.build(arch, seed=0).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- hand-written references


def _load_reference(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    model.load_state_dict(dict(zip(ours, theirs.values())))


@pytest.mark.parametrize(
    "kind, make, trainable",
    [("resnet18", R.resnet18, 11_689_512), ("resnet50", R.resnet50, 25_557_032), ("resnet20", R.cifar_resnet, 269_722)],
)
def test_matches_hand_written_reference(kind: str, make, trainable: int) -> None:
    data = R.cifar_spec(20) if kind == "resnet20" else R.imagenet_spec(kind, size=64)
    arch = arch_of(data)
    assert arch.params_trainable == trainable
    torch.manual_seed(0)
    reference, model = make(), BACKEND.build(arch)
    assert BACKEND.count_params(model)[0] == sum(p.numel() for p in reference.parameters()) == trainable
    assert [tuple(p.shape) for p in model.parameters()] == [tuple(p.shape) for p in reference.parameters()]
    _load_reference(model, reference)
    x = torch.randn(2, 3, *arch.graph.input.shape[:2])
    with torch.no_grad():
        assert (model.eval()(x) - reference.eval()(x)).abs().max() < 1e-5
    model.train(), reference.train()
    ours, theirs = model(x), reference(x)  # batch statistics; running statistics updated
    assert (ours - theirs).abs().max() < 1e-5
    target = torch.randn_like(ours)
    (ours * target).sum().backward()
    (theirs * target).sum().backward()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_torch_default_classifier_large_and_small() -> None:
    """torch_default keeps PyTorch's Linear init, also where the backend skips the constructor's
    draw for a large layer (512 x 1000 weights)."""
    for size, classes in ((32, 10), (64, 1000)):
        data = R.cifar_spec(20, classes) if size == 32 else R.imagenet_spec("resnet18", size=64, classes=classes)
        fc = BACKEND.build(arch_of(data), seed=0).head.classifier
        bound = fc.in_features**-0.5
        assert 0 < fc.bias.abs().max() <= bound and 0.9 * bound < fc.weight.abs().max() <= bound
